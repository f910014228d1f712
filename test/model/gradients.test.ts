/**
 * Gradients of the trainable parts (LoRA A and B, the video projector) against central finite
 * differences of the loss, on a tiny model. Runs on the cpu backend: its float32 kernels are plain
 * loops, so the finite differences are not blurred by a different summation order between calls.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { initBackend, loadModel, writeTinyModel, type CausalLM } from '../../src/index.js';
import { seededRandom } from '../../src/util/random.js';

let model: CausalLM;
let tf: typeof tfc;
let ids: number[];
let labels: number[];
const featureDim = 6;
let features: { data: Float32Array; shape: [number, number, number] };

beforeAll(async () => {
  await initBackend({ backend: 'cpu', log: null });
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'rpv-grad-')), 'tiny');
  await writeTinyModel(dir, { arch: 'qwen2', hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 24, vocabSize: 280, initStd: 0.3, seed: 5 });
  model = await loadModel(dir);
  tf = model.tf;
  model.addLora({ rank: 2, alpha: 4, dropout: 0, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], useRslora: true, seed: 1 });
  model.addProjector({ featureDim, seed: 2 });
  // B starts at zero (PEFT); give it values so A's gradient is not zero too.
  const rng = seededRandom(9);
  for (const p of model.loraPairs()) tf.tidy(() => p.bT.assign(tf.tensor(rng.normal(p.bT.size, 0.3), p.bT.shape)));
  const tok = model.tokenizer!;
  const enc = tok.encodeChat([
    { role: 'user', content: 'Look: <|video_pad|><|video_pad|><|video_pad|> what is it?' },
    { role: 'assistant', content: 'A red ball.' },
  ]);
  ids = enc.ids;
  labels = ids.map((id, i) => (i >= enc.spans[1].contentStart ? id : -100));
  features = { data: seededRandom(4).normal(3 * featureDim, 1), shape: [1, 3, featureDim] };
});

let training = false;
function loss(): tfc.Scalar {
  // With dropout, a fixed seed draws the same masks in every call: the loss stays a function.
  const r = model.computeLoss({ inputIds: ids, batch: 1, video: { features } }, labels, { training, seed: 17 });
  return tf.div(r.sum, r.count) as tfc.Scalar;
}

async function checkDirectional(variable: tfc.Variable, seed: number): Promise<{ analytic: number; numeric: number }> {
  const { grads } = tf.variableGrads(loss, [variable]);
  const g = (await grads[variable.name].data()) as Float32Array;
  tf.dispose(grads);
  const dir = seededRandom(seed).normal(variable.size, 1);
  let analytic = 0;
  for (let i = 0; i < g.length; i++) analytic += g[i] * dir[i];
  const original = variable.clone();
  // Small enough that curvature does not matter, large enough for float32 rounding of a ~5.6 loss.
  const eps = 1e-3;
  const at = async (sign: number) => {
    tf.tidy(() => variable.assign(tf.add(original, tf.mul(tf.tensor(dir, variable.shape), sign * eps))));
    const l = tf.tidy(loss);
    const v = (await l.data())[0];
    l.dispose();
    return v;
  };
  const numeric = ((await at(1)) - (await at(-1))) / (2 * eps);
  variable.assign(original);
  original.dispose();
  return { analytic, numeric };
}

describe('gradients against finite differences (cpu backend, float32)', () => {
  it('LoRA A and B in attention and MLP, projector weights and biases', async () => {
    const pairs = model.loraPairs();
    const proj = model.projector!;
    const cases: [string, tfc.Variable][] = [
      ['layer 0 q lora_A', pairs[0].aT],
      ['layer 0 v lora_B', pairs[2].bT],
      ['layer 1 o lora_A', pairs[10].aT],
      ['layer 1 down lora_B', pairs[13].bT],
      ['layer 0 gate lora_A', pairs[4].aT],
      ['projector first weight', proj.w1T],
      ['projector second bias', proj.b2],
    ];
    let seed = 100;
    for (const [label, v] of cases) {
      const { analytic, numeric } = await checkDirectional(v, seed++);
      expect(Math.abs(analytic), label).toBeGreaterThan(1e-3);
      expect(Math.abs(analytic - numeric) / Math.abs(analytic), `${label}: analytic ${analytic}, numeric ${numeric}`).toBeLessThan(2e-2);
    }
  });

  it('LoRA A and B with dropout on the LoRA input (training mode, fixed seed)', async () => {
    model.lora!.config.dropout = 0.3;
    const value = async () => {
      const l = tf.tidy(loss);
      const v = (await l.data())[0];
      l.dispose();
      return v;
    };
    const evalLoss = await value();
    training = true;
    try {
      expect(Math.abs((await value()) - evalLoss)).toBeGreaterThan(1e-4);
      const pairs = model.loraPairs();
      let seed = 200;
      for (const [label, v] of [['layer 0 k lora_A', pairs[1].aT], ['layer 1 up lora_B', pairs[12].bT], ['layer 1 down lora_A', pairs[13].aT]] as const) {
        const { analytic, numeric } = await checkDirectional(v, seed++);
        expect(Math.abs(analytic), label).toBeGreaterThan(1e-3);
        expect(Math.abs(analytic - numeric) / Math.abs(analytic), `${label}: analytic ${analytic}, numeric ${numeric}`).toBeLessThan(2e-2);
      }
    } finally {
      model.lora!.config.dropout = 0;
      training = false;
    }
  });

  it('base weights get no gradient: only LoRA and projector variables are trainable', () => {
    const names = model.trainableVariables().map((v) => v.name);
    expect(names.length).toBe(2 * 2 * 7 + 4);
    expect(names.every((n) => /lora_[AB]|projector/.test(n))).toBe(true);
  });
});
