// SwiGLU in the addon (src/native/pointwise.cc through vmath.cc's vectorised exponential) against
// a float64 reference, forward and both input gradients: sizes around the 8-lane width and a large
// one split over the pool, inputs out to where the sigmoid saturates, with the AVX2 and the scalar
// kernels and 1 and 2 threads; in the model, the same values and gradients as tfjs's composition.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend.js';
import { swiglu } from '../../src/model/mlp.js';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { nativeSwigluAvailable } from '../../src/native/swiglu.js';
import { randomArray } from './helpers.js';

const addon = loadNativeAddon().addon as NativeAddon;
const originalThreads = addon.threads();
beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});
afterAll(() => {
  addon.setThreads(originalThreads);
  addon.setIsa('auto');
});

/** Values in [-12, 12], then the extremes where e^-g overflows or vanishes. */
function inputs(n: number, seed: number) {
  const g = randomArray(n, seed).map((v) => v * 12);
  const extremes = [-100, -88.5, -87.2, -30, -1e-30, 0, 1e-30, 30, 87.5, 88.9, 100];
  for (let i = 0; i < Math.min(n, extremes.length); i++) g[(i * 7) % n] = extremes[i];
  return { g, u: randomArray(n, seed + 1).map((v) => v * 3), dy: randomArray(n, seed + 2) };
}

/**
 * The float64 values, and per element the size of the terms float32 arithmetic rounds: an error
 * bound scales with them, not with the result (dg crosses zero where g (1 - s) = -1, and g - g s
 * cancels for large g).
 */
function reference(g: Float32Array, u: Float32Array, dy: Float32Array) {
  const n = g.length;
  const want = { out: new Float64Array(n), dg: new Float64Array(n), du: new Float64Array(n) };
  const size = { out: new Float64Array(n), dg: new Float64Array(n), du: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const s = 1 / (1 + Math.exp(-g[i]));
    want.out[i] = g[i] * s * u[i];
    want.dg[i] = dy[i] * u[i] * s * (1 + g[i] * (1 - s));
    want.du[i] = dy[i] * g[i] * s;
    size.out[i] = Math.abs(want.out[i]);
    size.dg[i] = Math.abs(dy[i] * u[i] * s) * (1 + Math.abs(g[i]));
    size.du[i] = Math.abs(want.du[i]);
  }
  return { want, size };
}

/** Worst |got - want| / size over the elements (a tiny floor: e^-87 and below give 0). */
function worst(got: Float32Array, want: Float64Array, size: Float64Array): number {
  let e = 0;
  for (let i = 0; i < got.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]) / (size[i] + 1e-30));
  return e;
}

for (const isa of ['auto', 'scalar'] as const) {
  for (const threads of [1, 2]) {
    describe(`native SwiGLU, ${isa} kernel, ${threads} thread(s)`, () => {
      for (const n of [1, 7, 8, 9, 23, 100_003]) {
        it(`n=${n}: forward and gradients within float32 rounding of float64`, () => {
          addon.setIsa(isa);
          addon.setThreads(threads);
          const { g, u, dy } = inputs(n, n);
          // [pad, g, u, dy, out, dg, du]: offsets that are not multiples of 8.
          const heap = new Float32Array(3 + 6 * n);
          const off = (k: number) => 3 + k * n;
          heap.set(g, off(0));
          heap.set(u, off(1));
          heap.set(dy, off(2));
          addon.swiglu!(heap, off(0), off(1), n, off(3));
          addon.swigluGrad!(heap, off(0), off(1), off(2), n, off(4), off(5));
          const { want, size } = reference(g, u, dy);
          expect(worst(heap.subarray(off(3), off(4)), want.out, size.out)).toBeLessThan(1e-6);
          expect(worst(heap.subarray(off(4), off(5)), want.dg, size.dg)).toBeLessThan(1e-6);
          expect(worst(heap.subarray(off(5)), want.du, size.du)).toBeLessThan(1e-6);
          expect(heap.subarray(0, 3)).toEqual(new Float32Array(3));
        });
      }
    });
  }
}

describe('native SwiGLU in the model', () => {
  it('gives the values and gradients of the tfjs composition', async () => {
    addon.setIsa('auto');
    addon.setThreads(originalThreads);
    expect(nativeSwigluAvailable(), loadNativeAddon().reason ?? '').toBe(true);
    const { g, u, dy } = inputs(3 * 1001, 5);
    const run = () =>
      tf.tidy(() => {
        const gt = tf.tensor2d(g, [3, 1001]);
        const ut = tf.tensor2d(u, [3, 1001]);
        const f = (a: tf.Tensor, b: tf.Tensor) => tf.mul(swiglu(tf, a as tf.Tensor2D, b as tf.Tensor2D), tf.tensor2d(dy, [3, 1001]));
        const value = swiglu(tf, gt, ut);
        const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(f(a, b)))([gt, ut]);
        return [value, dg, du].map((t) => t.dataSync() as Float32Array);
      });
    const native = run();
    process.env.RPV_NATIVE_SWIGLU = '0';
    let plain: Float32Array[];
    try {
      expect(nativeSwigluAvailable()).toBe(false);
      plain = run();
    } finally {
      delete process.env.RPV_NATIVE_SWIGLU;
    }
    const { size } = reference(g, u, dy);
    [size.out, size.dg, size.du].forEach((sz, k) => expect(worst(native[k], Float64Array.from(plain[k]), sz), `output ${k}`).toBeLessThan(1e-6));
  });

  it('refuses operands outside the heap', () => {
    const heap = new Float32Array(10);
    expect(() => addon.swiglu!(heap, 0, 5, 6, 0)).toThrow('rpv pointwise: swiglu: an operand lies outside the heap');
    expect(() => addon.swigluGrad!(heap, 0, 0, 0, 4, 7, 0)).toThrow('rpv pointwise: swigluGrad: an operand lies outside the heap');
  });
});
