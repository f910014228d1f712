// The native GEMM against a float64 reference: shapes at and around every blocking edge, all four
// transpose combinations, batches and batch broadcast, the fused epilogue, and both microkernels.
import { afterAll, describe, expect, it } from 'vitest';
import { GemmParam, loadNativeAddon } from '../../src/native/addon.js';
import type { NativeAddon } from '../../src/native/addon.js';
import { sgemm } from '../../src/native/gemm.js';
import { maxRelError, randomArray, referenceGemm } from './helpers.js';
import type { Act } from './helpers.js';

const load = loadNativeAddon();
if (!load.addon) throw new Error(`native addon must be built for these tests: ${load.reason}`);
const addon: NativeAddon = load.addon;
const detected = addon.detectedIsa();
const originalThreads = addon.threads();

afterAll(() => {
  addon.setIsa('auto');
  addon.setThreads(originalThreads);
});

// [m, n, k]: unit sizes, K = 0 and 1, exact microkernel tiles (6 x 16), one past the depth
// block (256), past the row block (96/192) and past the column block (1024).
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 17, 9],
  [13, 1, 9],
  [7, 5, 1],
  [5, 6, 0],
  [6, 16, 256],
  [7, 17, 257],
  [97, 33, 300],
  [200, 45, 70],
  [9, 1030, 20],
];
const TRANSPOSES: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

for (const isa of ['auto', 'scalar'] as const) {
  describe(`sgemm with the ${isa === 'auto' ? detected : 'scalar'} microkernel`, () => {
    it('selects the requested microkernel', () => {
      expect(addon.setIsa(isa)).toBe(isa === 'auto' ? detected : 'scalar');
      expect(addon.isa()).toBe(isa === 'auto' ? detected : 'scalar');
    });

    for (const [m, n, k] of SHAPES) {
      for (const [transposeA, transposeB] of TRANSPOSES) {
        it(`m=${m} n=${n} k=${k} transposeA=${transposeA} transposeB=${transposeB}`, () => {
          addon.setIsa(isa);
          const a = randomArray(m * k, m * 31 + k);
          const b = randomArray(k * n, n * 17 + k);
          const out = sgemm({ a, b, m, n, k, transposeA, transposeB, addon });
          expect(out.length).toBe(m * n);
          expect(maxRelError(out, referenceGemm({ a, b, m, n, k, transposeA, transposeB }))).toBeLessThan(1e-5);
          if (k === 0) expect(Array.from(out).every((v) => v === 0)).toBe(true);
        });
      }
    }

    for (const [batchA, batchB] of [
      [3, 3],
      [1, 4],
      [4, 1],
    ]) {
      it(`batches ${batchA} x ${batchB}, all transposes`, () => {
        addon.setIsa(isa);
        const [m, n, k] = [11, 23, 37];
        for (const [transposeA, transposeB] of TRANSPOSES) {
          const a = randomArray(batchA * m * k, 5 + batchA);
          const b = randomArray(batchB * k * n, 9 + batchB);
          const o = { a, b, m, n, k, transposeA, transposeB, batchA, batchB };
          const out = sgemm({ ...o, addon });
          expect(out.length).toBe(Math.max(batchA, batchB) * m * n);
          expect(maxRelError(out, referenceGemm(o))).toBeLessThan(1e-5);
        }
      });
    }

    const ACTS: Act[] = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'];
    for (const activation of ACTS) {
      it(`fused bias + ${activation}, bias shaped [n], [m, n] and [batch, m, n]`, () => {
        addon.setIsa(isa);
        const [batch, m, n, k] = [3, 9, 21, 13];
        const a = randomArray(batch * m * k, 1);
        // Scaled so relu6 clips at 6 and sigmoid/elu see both signs.
        const b = randomArray(k * n, 2).map((v) => v * 4);
        for (const biasLength of [n, m * n, batch * m * n]) {
          const bias = randomArray(biasLength, biasLength);
          const alpha = activation === 'prelu' ? randomArray(biasLength, 77).map((v) => v * 0.5) : undefined;
          for (const transposeA of [false, true]) {
            const o = { a, b, m, n, k, transposeA, batchA: batch, batchB: 1, bias, activation };
            const out = sgemm({ ...o, leakyreluAlpha: 0.1, preluAlpha: alpha, addon });
            const ref = referenceGemm({ ...o, leaky: 0.1, alpha });
            expect(maxRelError(out, ref)).toBeLessThan(1e-5);
          }
        }
      });
    }

    it('bias and activation apply when K = 0', () => {
      addon.setIsa(isa);
      const bias = Float32Array.from([-1, 2, -3]);
      const out = sgemm({ a: new Float32Array(0), b: new Float32Array(0), m: 2, n: 3, k: 0, bias, activation: 'relu', addon });
      expect(Array.from(out)).toEqual([0, 2, 0, 0, 2, 0]);
    });
  });
}

describe('random shapes', () => {
  it('matches the reference on 150 seeded random problems (shapes, transposes, batches, epilogues)', () => {
    const rand = randomArray(150 * 12, 2024).map((v) => (v + 1) / 2);
    const acts: Act[] = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'];
    for (let c = 0; c < 150; c++) {
      const r = (i: number) => rand[c * 12 + i];
      addon.setIsa(r(0) < 0.25 ? 'scalar' : 'auto');
      addon.setThreads(r(1) < 0.5 ? 1 : 2);
      const big = r(2) < 0.1;
      const m = 1 + Math.floor(r(3) * (big ? 300 : 40));
      const n = 1 + Math.floor(r(4) * (big ? 300 : 40));
      const k = Math.floor(r(5) * (big ? 600 : 40));
      const batch = 1 + Math.floor(r(6) * 3);
      const side = Math.floor(r(7) * 3); // 0: both batched, 1: a broadcast, 2: b broadcast
      const batchA = side === 1 ? 1 : batch;
      const batchB = side === 2 ? 1 : batch;
      const transposeA = r(8) < 0.5;
      const transposeB = r(9) < 0.5;
      const activation = r(10) < 0.5 ? 'linear' : acts[Math.floor(r(11) * acts.length)];
      const outBatch = Math.max(batchA, batchB);
      const a = randomArray(batchA * m * k, 3 * c + 1);
      const b = randomArray(batchB * k * n, 3 * c + 2);
      const bias = r(10) < 0.3 ? undefined : randomArray([n, m * n, outBatch * m * n][c % 3], 3 * c + 3);
      const alpha = activation === 'prelu' ? randomArray(n, c) : undefined;
      const o = { a, b, m, n, k, transposeA, transposeB, batchA, batchB, bias, activation };
      const out = sgemm({ ...o, leakyreluAlpha: 0.3, preluAlpha: alpha, addon });
      const err = maxRelError(out, referenceGemm({ ...o, leaky: 0.3, alpha }));
      if (!(err < 1e-5)) throw new Error(`case ${c}: ${JSON.stringify({ m, n, k, batchA, batchB, transposeA, transposeB, activation, bias: bias?.length })}: error ${err}`);
    }
  });
});

describe('thread pool', () => {
  it('gives bit-identical results with 1 and 2 threads (same summation order)', () => {
    addon.setIsa('auto');
    const [m, n, k] = [300, 260, 520];
    const a = randomArray(2 * m * k, 3);
    const b = randomArray(2 * k * n, 4);
    addon.setThreads(1);
    expect(addon.threads()).toBe(1);
    const one = sgemm({ a, b, m, n, k, batchA: 2, batchB: 2, transposeB: true, addon });
    addon.setThreads(2);
    expect(addon.threads()).toBe(2);
    for (let rep = 0; rep < 5; rep++) {
      const two = sgemm({ a, b, m, n, k, batchA: 2, batchB: 2, transposeB: true, addon });
      expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    }
    expect(maxRelError(one, referenceGemm({ a, b, m, n, k, batchA: 2, batchB: 2, transposeB: true }))).toBeLessThan(1e-5);
  });
});

describe('argument checks', () => {
  it('rejects arrays too small for the shape before touching memory', () => {
    const p = new Float64Array(GemmParam.count);
    p[GemmParam.batch] = 1;
    p[GemmParam.m] = 2;
    p[GemmParam.n] = 2;
    p[GemmParam.k] = 2;
    p[GemmParam.lda] = 2;
    p[GemmParam.ldb] = 2;
    p[GemmParam.ldc] = 2;
    const four = new Float32Array(4);
    expect(() => addon.gemm(four, four, new Float32Array(3), p)).toThrow(
      'rpv matmul: gemm: output of 3 floats is too small for the strides given',
    );
    expect(() => addon.gemm(new Float32Array(3), four, four, p)).toThrow(
      'rpv matmul: gemm: a of 3 floats is too small for the shape and strides given',
    );
    p[GemmParam.aOffset] = 1;
    expect(() => addon.gemm(four, four, four, p)).toThrow(
      'rpv matmul: gemm: a of 4 floats is too small for the shape and strides given',
    );
    p[GemmParam.aOffset] = 0.5;
    expect(() => addon.gemm(four, four, four, p)).toThrow(
      'rpv matmul: gemm: params[6] must be a non-negative integer, found 0.500000',
    );
    expect(() => addon.gemm(four, four, four, new Float64Array(3))).toThrow(
      `rpv matmul: gemm: params must be a Float64Array of ${GemmParam.count} numbers`,
    );
    expect(() => addon.setIsa('sse9' as 'auto')).toThrow(
      "rpv matmul: setIsa: unknown instruction set 'sse9'; expected 'auto', 'scalar' or 'avx2-fma'",
    );
  });

  it('sgemm names the operand whose size does not match', () => {
    expect(() => sgemm({ a: new Float32Array(5), b: new Float32Array(6), m: 2, n: 2, k: 3, addon })).toThrow(
      'sgemm: a has 5 values; expected batchA·m·k = 6',
    );
    expect(() =>
      sgemm({ a: new Float32Array(6), b: new Float32Array(18), m: 2, n: 2, k: 3, batchA: 1, batchB: 3, bias: new Float32Array(5), addon }),
    ).toThrow('sgemm: bias has 5 values; expected 2 ([n]), 4 ([m, n]) or 12 ([batch, m, n])');
  });
});
