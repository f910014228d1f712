// Five training steps of a tiny LoRA + projector model on the wasm backend, once with tfjs-wasm's
// own matmul and once with the native kernel: the same losses and gradients (1e-4 relative).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { installNativeMatmul, nativeMatmulStats, uninstallNativeMatmul } from '../../src/native/matmul.js';
import { loadModel } from '../../src/model/load.js';
import { writeTinyModel } from '../../src/model/tiny.js';
import type { CausalLM } from '../../src/model/decoder.js';
import { randomArray, startWasm } from './helpers.js';

const STEPS = 5;
const BATCH = 2;
const SEQ = 24;
const FRAMES = 4;
const FEATURE_DIM = 32;

let dir: string;
let model: CausalLM;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'rpv-native-train-'));
  await writeTinyModel(dir, { hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, seed: 7 });
  await startWasm();
  model = await loadModel(dir, { backend: 'wasm' });
  model.addLora({ rank: 4, alpha: 8, dropout: 0, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 3 });
  model.addProjector({ featureDim: FEATURE_DIM, seed: 5 });
});

afterAll(() => {
  uninstallNativeMatmul();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  losses: number[];
  /** grads[step][variable] */
  grads: Float32Array[][];
}

function batchInput() {
  const vid = model.videoTokenId;
  if (vid === undefined) throw new Error('tiny model has no video placeholder token');
  const ids = new Int32Array(BATCH * SEQ);
  const labels = new Int32Array(BATCH * SEQ);
  const noise = randomArray(BATCH * SEQ, 99);
  for (let b = 0; b < BATCH; b++) {
    for (let t = 0; t < SEQ; t++) {
      const isVideo = t >= 1 && t <= FRAMES;
      const id = isVideo ? vid : 10 + Math.floor((noise[b * SEQ + t] + 1) * 200);
      ids[b * SEQ + t] = id;
      labels[b * SEQ + t] = t <= FRAMES ? -100 : id;
    }
  }
  const features = { data: randomArray(BATCH * FRAMES * FEATURE_DIM, 123), shape: [BATCH, FRAMES, FEATURE_DIM] as [number, number, number] };
  return { input: { inputIds: ids, batch: BATCH, video: { features } }, labels };
}

async function train(initial: Float32Array[]): Promise<Run> {
  const vars = model.trainableVariables();
  vars.forEach((v, i) => v.assign(tf.tensor(initial[i], v.shape)));
  const optimizer = tf.train.sgd(0.5);
  const { input, labels } = batchInput();
  const run: Run = { losses: [], grads: [] };
  let tensorsAfterFirst = 0;
  for (let step = 0; step < STEPS; step++) {
    const { value, grads } = tf.variableGrads(() => {
      const { sum, count } = model.computeLoss(input, labels, { training: true, seed: step });
      return tf.div(sum, count) as tf.Scalar;
    }, vars);
    run.losses.push((await value.data())[0]);
    run.grads.push(await Promise.all(vars.map(async (v) => (await grads[v.name].data()) as Float32Array)));
    optimizer.applyGradients(grads);
    value.dispose();
    tf.dispose(Object.values(grads));
    if (step === 0) tensorsAfterFirst = tf.memory().numTensors;
  }
  // Steps after the first (which may fill the model's caches) leave no tensors behind.
  expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
  optimizer.dispose();
  return run;
}

function relError(x: Float32Array, ref: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (x[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

it('trains a tiny LoRA + projector model to the same losses and gradients with and without the native kernel', async () => {
  const vars = model.trainableVariables();
  expect(vars.length).toBe(2 * 2 * 7 + 4);
  const initial = await Promise.all(vars.map(async (v) => (await v.data()) as Float32Array));

  uninstallNativeMatmul();
  const callsBefore = nativeMatmulStats().nativeCalls;
  const plain = await train(initial);
  expect(nativeMatmulStats().nativeCalls).toBe(callsBefore);

  const info = installNativeMatmul({ threads: 2 });
  expect(info.active).toBe(true);
  const native = await train(initial);
  // The forward and backward matmuls really ran natively.
  expect(nativeMatmulStats().nativeCalls - callsBefore).toBeGreaterThan(STEPS * 50);

  // It learns: the loss falls over the five steps.
  expect(plain.losses[STEPS - 1]).toBeLessThan(plain.losses[0]);
  for (let step = 0; step < STEPS; step++) {
    expect(Math.abs(native.losses[step] - plain.losses[step]) / Math.abs(plain.losses[step])).toBeLessThan(1e-4);
    for (let v = 0; v < vars.length; v++) {
      const err = relError(native.grads[step][v], plain.grads[step][v]);
      if (!(err < 1e-4)) throw new Error(`step ${step}: gradient of ${vars[v].name} differs by ${err} (relative)`);
    }
  }
  // LoRA B starts at zero, so A's first gradient is exactly zero on both routes; later ones are not.
  const lastNorm = native.grads[STEPS - 1].reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0);
  expect(lastNorm).toBeGreaterThan(0);
});
