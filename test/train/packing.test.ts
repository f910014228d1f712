// Packed rows (src/train/packing.ts): first-fit decreasing keeps whole samples in rows of at most
// max_tokens, deterministically; and training on packed rows gives each sample the loss it has
// alone and the step the gradients of the same samples unpacked (1e-5), video and text-only
// samples mixed, on the native fused attention (segment starts) and on tfjs's (an equivalent mask).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import { initBackend, loadModel, writeTinyModel } from '../../src/index.js';
import { segmentPositions, type CausalLM } from '../../src/model/decoder.js';
import { nativeAttentionAvailable } from '../../src/native/attention.js';
import { lossSum, targetLosses, trainableParams } from '../../src/train/bridge.js';
import { packBatch, type PackedBatch, type PreparedSample } from '../../src/train/pack.js';
import { arrangeStep, fillRatio, firstFitDecreasing } from '../../src/train/packing.js';
import { seededRandom } from '../../src/util/random.js';

const FEATURE_DIM = 8;

describe('firstFitDecreasing', () => {
  it('puts whole samples, longest first, into the first row with room', () => {
    // 70 opens row 0; 60 row 1; 50 row 2; 40 fits row 1 (60 + 40); 30 row 0 (70 + 30); 20 and 10 row 2.
    expect(firstFitDecreasing([30, 70, 10, 40, 60, 50, 20], 100)).toEqual([
      [0, 1],
      [3, 4],
      [2, 5, 6],
    ]);
  });
  it('breaks ties by the given order and never exceeds the row length', () => {
    const rng = seededRandom(5);
    const lengths = Array.from({ length: 200 }, () => 1 + Math.floor(rng.next() * 120));
    const rows = firstFitDecreasing(lengths, 128);
    expect(rows.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const row of rows) expect(row.reduce((n, i) => n + lengths[i]!, 0)).toBeLessThanOrEqual(128);
    expect(firstFitDecreasing(lengths, 128)).toEqual(rows);
    expect(firstFitDecreasing([5, 5, 5], 10)).toEqual([[0, 1], [2]]);
  });
});

/** A sample of `n` tokens (ids 3..300), `frames` video tokens from position 4 when > 0, targets on its second half. */
function sample(id: string, n: number, frames: number, seed: number): PreparedSample {
  const rng = seededRandom(seed);
  const inputIds = Int32Array.from({ length: n }, () => 3 + Math.floor(rng.next() * 297));
  const videoPositions = Int32Array.from({ length: frames }, (_, k) => 4 + k);
  for (const p of videoPositions) inputIds[p] = -1;
  const lossMask = Uint8Array.from({ length: n }, (_, t) => (t >= Math.max(n / 2, 4 + frames) ? 1 : 0));
  const trainedTokens = lossMask.reduce((a, b) => a + b, 0);
  const frameData = Float32Array.from(rng.normal(frames * FEATURE_DIM, 1));
  return {
    sampleId: id,
    prompt: { inputIds, lossMask, focusMask: new Uint8Array(n), videoPositions, numFrames: frames, trainedTokens },
    frames: frameData,
  };
}

const SAMPLES = [sample('a', 37, 6, 1), sample('b', 90, 0, 2), sample('c', 12, 0, 3), sample('d', 55, 16, 4), sample('e', 70, 4, 5), sample('f', 20, 0, 6)];

let model: CausalLM;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'rpv-packing-')), 'm');
  await writeTinyModel(dir, { hiddenSize: 48, numLayers: 2, numHeads: 6, numKvHeads: 2, vocabSize: 320, initStd: 0.2, seed: 4 });
  model = await loadModel(dir, { log: null });
  // Dropout 0: its masks hash the element index, which packing moves.
  model.addLora({ rank: 4, alpha: 8, dropout: 0, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 });
  model.addProjector({ featureDim: FEATURE_DIM, seed: 2 });
  const tf = model.tf;
  const rng = seededRandom(2);
  for (const p of model.loraPairs()) tf.tidy(() => p.bT.assign(tf.tensor(rng.normal(p.bT.size, 0.2), p.bT.shape)));
});

afterAll(() => model?.dispose());

/** The step's summed loss, its gradients, and each sample's summed target loss. */
async function step(micro: PackedBatch[]) {
  const tf = model.tf;
  const params = trainableParams(model, { video: true });
  const grads = new Map<string, Float64Array>();
  let loss = 0;
  for (const batch of micro) {
    const { value, grads: g } = tf.variableGrads(() => lossSum(model, batch, { training: true, seed: 1 }), params.map((p) => p.variable));
    loss += (await value.data())[0]!;
    for (const p of params) {
      const gi = g[p.variable.name];
      if (!gi) continue; // a micro-batch without video leaves the projector out
      const d = await gi.data();
      const acc = grads.get(p.name) ?? new Float64Array(d.length);
      d.forEach((x, i) => (acc[i]! += x));
      grads.set(p.name, acc);
    }
    tf.dispose([value, ...Object.values(g)]);
  }
  const perSample = new Map<string, number>();
  for (const batch of micro) {
    const { nll } = await targetLosses(model, batch);
    // Targets come in position order: row by row, and in a row sample by sample.
    const owners: string[] = [];
    const L = batch.seqLen;
    for (let b = 0; b < batch.batch; b++) {
      const ids = batch.rows ? batch.rows[b]! : [batch.sampleIds[b]!];
      let s = -1;
      for (let t = 0; t < L; t++) {
        if (batch.segmentStarts ? batch.segmentStarts[b * L + t] === t && batch.attentionMask[b * L + t] : t === 0) s += 1;
        if (t > 0 && batch.targetMask[b * L + t]) owners.push(ids[s]!);
      }
    }
    expect(owners.length).toBe(nll.length);
    nll.forEach((x, i) => perSample.set(owners[i]!, (perSample.get(owners[i]!) ?? 0) + x));
  }
  return { loss, grads, perSample };
}

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-6;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
  }
  return err / scale;
}

async function compare(route: string) {
  const alone = await step(SAMPLES.map((s) => packBatch([s], FEATURE_DIM)));
  const micro = arrangeStep(SAMPLES, 'packed', { batchSize: 2, maxTokens: 128, featureDim: FEATURE_DIM });
  // 90+37 | 70+55 | 20+12: three rows, two micro-batches.
  expect(micro.map((m) => m.rows)).toEqual([[['a', 'b'], ['d', 'e']], [['c', 'f']]]);
  const packed = await step(micro);
  expect(fillRatio(micro)).toBeCloseTo(284 / (2 * 127 + 32), 10);
  expect(Math.abs(packed.loss - alone.loss) / alone.loss, route).toBeLessThan(1e-5);
  for (const s of SAMPLES) expect(Math.abs(packed.perSample.get(s.sampleId)! - alone.perSample.get(s.sampleId)!) / alone.perSample.get(s.sampleId)!, `${route} sample ${s.sampleId}`).toBeLessThan(1e-5);
  for (const [name, g] of alone.grads) expect(maxRel(packed.grads.get(name)!, g), `${route} ${name}`).toBeLessThan(1e-5);
  return packed;
}

describe('packed rows train as the samples alone', () => {
  // Rotary scores depend on position differences only, so the losses cannot tell whether
  // positions restart: checked directly.
  it('restart positions at 0 for each sample, and give the padding a segment of its own', () => {
    const [m] = arrangeStep([SAMPLES[2]!, SAMPLES[5]!, SAMPLES[0]!], 'packed', { batchSize: 2, maxTokens: 40, featureDim: FEATURE_DIM });
    expect(m!.rows).toEqual([['a'], ['c', 'f']]);
    const L = m!.seqLen;
    expect(L).toBe(37);
    const want = [...Array.from({ length: 37 }, (_, t) => t), ...Array.from({ length: 12 }, (_, t) => t), ...Array.from({ length: 20 }, (_, t) => t), ...Array.from({ length: 5 }, (_, t) => t)];
    expect(Array.from(segmentPositions(m!.segmentStarts!, L))).toEqual(want);
    // Row 1: c at 0..11, f at 12..31, padding 32..36; videos of a at its positions 4..9.
    expect(Array.from(m!.segmentStarts!.subarray(L, 2 * L))).toEqual([...Array(12).fill(0), ...Array(20).fill(12), ...Array(5).fill(32)]);
    expect(Array.from(m!.videoPositions)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(m!.trainedTokens).toBe(SAMPLES[0]!.prompt.trainedTokens + SAMPLES[2]!.prompt.trainedTokens + SAMPLES[5]!.prompt.trainedTokens);
  });
  it('on the native fused attention (segment starts)', async () => {
    expect(nativeAttentionAvailable()).toBe(true);
    await compare('native');
  });
  it('on tfjs attention (the equivalent mask)', async () => {
    process.env.RPV_FUSED_ATTENTION = '0';
    try {
      expect(nativeAttentionAvailable()).toBe(false);
      await compare('tfjs');
    } finally {
      delete process.env.RPV_FUSED_ATTENTION;
    }
  });
  it('grouped micro-batches hold the same samples sorted longest first', () => {
    const micro = arrangeStep(SAMPLES, 'grouped', { batchSize: 2, maxTokens: 128, featureDim: FEATURE_DIM });
    expect(micro.map((m) => m.sampleIds)).toEqual([['b', 'e'], ['d', 'a'], ['f', 'c']]);
    expect(fillRatio(micro)).toBeCloseTo(284 / (2 * 90 + 2 * 55 + 2 * 20), 10);
  });
});
