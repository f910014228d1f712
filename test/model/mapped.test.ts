/**
 * The frozen base used in place (memory-mapped safetensors, native kernels) against the same
 * model held in tfjs tensors, on tiny Qwen2 and Llama folders in F32, F16 and BF16: logits,
 * losses and every trainable gradient agree (1e-5), with and without dropout; gradient
 * checkpointing gives the same gradients as keeping activations; the chunked cross-entropy equals
 * the plain log-softmax; nothing leaks over steps.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, loadModel, writeTinyModel, type CausalLM, type TinyModelOptions } from '../../src/index.js';
import { MappedTable, TensorTable } from '../../src/model/frozen.js';
import { seededRandom } from '../../src/util/random.js';

const FEATURE_DIM = 8;

beforeAll(async () => {
  const info = await initBackend({ backend: 'wasm', log: null });
  if (!info.nativeMatmul.active) throw new Error(`these tests need the native addon: ${info.nativeMatmul.reason}`);
});

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-8;
  let err = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    err = Math.max(err, Math.abs(a[i] - b[i]));
  }
  return err / scale;
}

async function prepared(opts: TinyModelOptions, placement: 'mapped' | 'tensors', dir: string): Promise<CausalLM> {
  const model = await loadModel(dir, { weights: placement, log: null });
  model.addLora({ rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 3 });
  model.addProjector({ featureDim: FEATURE_DIM, seed: 5 });
  const tf = model.tf;
  const rng = seededRandom(9);
  // LoRA B starts at zero: give it values so every gradient is non-trivial.
  for (const p of model.loraPairs()) tf.tidy(() => p.bT.assign(tf.tensor(rng.normal(p.bT.size, 0.2), p.bT.shape)));
  void opts;
  return model;
}

function batch(model: CausalLM) {
  const B = 2;
  const T = 21;
  const vid = model.videoTokenId!;
  const rng = seededRandom(4);
  const ids = new Int32Array(B * T);
  const labels = new Int32Array(B * T);
  const mask = new Int32Array(B * T).fill(1);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const video = t >= 2 && t < 5;
      ids[b * T + t] = video ? vid : 3 + Math.floor(rng.next() * 250);
      labels[b * T + t] = t < 6 ? -100 : ids[b * T + t];
    }
  }
  // Left padding on the second row.
  mask[T] = 0;
  mask[T + 1] = 0;
  labels[T + 1] = -100;
  const features = { data: rng.normal(B * 3 * FEATURE_DIM, 1), shape: [B, 3, FEATURE_DIM] as [number, number, number] };
  return { input: { inputIds: ids, batch: B, attentionMask: mask, video: { features } }, labels };
}

async function lossAndGrads(model: CausalLM, options: { training: boolean; checkpoint?: boolean }) {
  const tf = model.tf;
  const { input, labels } = batch(model);
  const vars = model.trainableVariables();
  const { value, grads } = tf.variableGrads(() => {
    const r = model.computeLoss(input, labels, { training: options.training, seed: 7, checkpoint: options.checkpoint });
    return tf.div(r.sum, r.count) as tfc.Scalar;
  }, vars);
  const loss = (await value.data())[0];
  const g: Float32Array[] = [];
  for (const v of vars) g.push((await grads[v.name].data()) as Float32Array);
  value.dispose();
  tf.dispose(Object.values(grads));
  return { loss, grads: g };
}

const MODELS: [string, TinyModelOptions][] = [
  ['qwen2 F32', { arch: 'qwen2', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 300, initStd: 0.2, seed: 3, dtype: 'F32' }],
  ['qwen2 BF16', { arch: 'qwen2', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 300, initStd: 0.2, seed: 3, dtype: 'BF16' }],
  ['llama F16 (untied head)', { arch: 'llama', hiddenSize: 48, numLayers: 3, numHeads: 6, numKvHeads: 2, vocabSize: 310, initStd: 0.2, seed: 8, dtype: 'F16' }],
];

for (const [name, opts] of MODELS) {
  describe(`${name}: mapped weights`, () => {
    let dir: string;
    let mapped: CausalLM;
    let tensors: CausalLM;

    beforeAll(async () => {
      dir = path.join(mkdtempSync(path.join(tmpdir(), 'rpv-mapped-')), 'm');
      await writeTinyModel(dir, opts);
      mapped = await prepared(opts, 'mapped', dir);
      tensors = await prepared(opts, 'tensors', dir);
    });

    it('holds no base weight in the tfjs heap', () => {
      expect(mapped.weights.embed).toBeInstanceOf(MappedTable);
      expect(tensors.weights.embed).toBeInstanceOf(TensorTable);
      expect(mapped.weights.layers.every((l) => l.mlp.down.heapBytes === 0 && l.attn.q.heapBytes === 0)).toBe(true);
      expect(mapped.weights.mappedFiles!.length).toBe(1);
    });

    it('gives the logits of the tensors path', async () => {
      const { input } = batch(mapped);
      const a = mapped.logits(input);
      const b = tensors.logits(input);
      expect(relDiff((await a.data()) as Float32Array, (await b.data()) as Float32Array)).toBeLessThan(1e-5);
      a.dispose();
      b.dispose();
    });

    for (const training of [false, true]) {
      it(`gives the loss and gradients of the tensors path${training ? ' with LoRA dropout' : ''}`, async () => {
        const a = await lossAndGrads(mapped, { training });
        const b = await lossAndGrads(tensors, { training });
        expect(Math.abs(a.loss - b.loss) / b.loss).toBeLessThan(1e-5);
        a.grads.forEach((g, i) => expect(relDiff(g, b.grads[i]), `variable ${i}`).toBeLessThan(1e-5));
      });
    }

    it('gives the same loss and gradients with gradient checkpointing, on both placements, with and without dropout', async () => {
      for (const model of [mapped, tensors]) {
        for (const training of [true, false]) {
          const kept = await lossAndGrads(model, { training, checkpoint: false });
          const recomputed = await lossAndGrads(model, { training, checkpoint: true });
          expect(recomputed.loss).toBe(kept.loss);
          recomputed.grads.forEach((g, i) => expect(relDiff(g, kept.grads[i]), `variable ${i} (training ${training})`).toBeLessThan(1e-6));
        }
      }
    });

    it('computes the chunked cross-entropy equal to the plain log-softmax of full logits', async () => {
      for (const model of [mapped, tensors]) {
        const tf = model.tf;
        const { input, labels } = batch(model);
        const nll = await model.labelNll(input, labels);
        const logp = tf.tidy(() => tf.logSoftmax(model.logits(input)));
        const lp = (await logp.data()) as Float32Array;
        logp.dispose();
        const V = model.config.vocabSize;
        const T = labels.length / input.batch;
        const plain: number[] = [];
        for (let b = 0; b < input.batch; b++) {
          for (let t = 0; t + 1 < T; t++) {
            const label = labels[b * T + t + 1];
            if (label !== -100) plain.push(-lp[(b * T + t) * V + label]);
          }
        }
        expect(nll.length).toBe(plain.length);
        expect(relDiff(nll, plain)).toBeLessThan(1e-5);
        const { sum, count } = tf.tidy(() => {
          const r = model.computeLoss(input, labels);
          return { sum: r.sum, count: r.count };
        });
        expect(count).toBe(plain.length);
        expect(Math.abs((await sum.data())[0] - plain.reduce((s, v) => s + v, 0)) / plain.length).toBeLessThan(1e-5);
        sum.dispose();
      }
    });

    it('holds less memory at its peak with checkpointing', async () => {
      const tf = mapped.tf;
      const peak = async (checkpoint: boolean) => (await tf.profile(() => lossAndGrads(mapped, { training: true, checkpoint }) as unknown as tfc.TensorContainer)).peakBytes;
      expect(await peak(true)).toBeLessThan(await peak(false));
    });

    it('keeps tf.memory().numTensors flat over training steps with checkpointing', async () => {
      const tf = mapped.tf;
      await lossAndGrads(mapped, { training: true, checkpoint: true });
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) await lossAndGrads(mapped, { training: true, checkpoint: true });
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}
