// The counter-based dropout: the native kernel and the JavaScript mask draw the same mask, with
// the asked-for rate, and a different seed draws a different mask.
import { expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.js';
import { dropoutDraw, dropoutMask } from '../../src/model/lora.js';
import { nativeDropoutAvailable, nativeDropoutScale } from '../../src/native/dropout.js';
import { randomArray } from './helpers.js';
import { loadNativeAddon } from '../../src/native/addon.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

it('draws the JavaScript mask exactly, on every core, with the asked-for rate', async () => {
  expect(nativeDropoutAvailable(), `backend ${tf.getBackend()}; addon: ${loadNativeAddon().reason ?? loadNativeAddon().path}`).toBe(true);
  const n = 300_001;
  const x = randomArray(n, 5);
  for (const [rate, seed] of [[0.05, 17], [0.5, 4_000_000_123], [0.1, 0]]) {
    const mask = dropoutMask(n, rate, 2, seed);
    const { seedMix, threshold, keep } = dropoutDraw(rate, 2, seed);
    const t = tf.tensor1d(x);
    const out = nativeDropoutScale(t, seedMix, threshold, keep);
    const got = (await out.data()) as Float32Array;
    tf.dispose([t, out]);
    let dropped = 0;
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) dropped++;
      if (got[i] !== Math.fround(x[i] * mask[i]) && !(got[i] === 0 && mask[i] === 0)) throw new Error(`element ${i}: native ${got[i]}, JS ${x[i] * mask[i]}`);
    }
    expect(Math.abs(dropped / n - rate)).toBeLessThan(0.005);
    expect(mask.find((v) => v !== 0)).toBe(Math.fround(2 / (1 - rate)));
  }
  const a = dropoutMask(1000, 0.5, 1, 1);
  const b = dropoutMask(1000, 0.5, 1, 2);
  expect(a.filter((v, i) => v !== b[i]).length).toBeGreaterThan(300);
});
