// Shared by the native matmul tests: a seeded generator, a float64 reference GEMM with the fused
// epilogue, and the tfjs wasm backend set up the way rpv's backend init does it.
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Mulberry32 } from '../../src/util/random.js';

/** Deterministic uniform values in [-1, 1) (mulberry32). */
export function randomArray(length: number, seed: number): Float32Array {
  return new Mulberry32(seed).fillSymmetric(new Float32Array(length), 1);
}

export type Act = 'linear' | 'relu' | 'relu6' | 'prelu' | 'leakyrelu' | 'sigmoid' | 'elu';

export function activate(act: Act, v: number, slope: number, leaky: number): number {
  switch (act) {
    case 'linear':
      return v;
    case 'relu':
      return Math.max(v, 0);
    case 'relu6':
      return Math.min(Math.max(v, 0), 6);
    case 'prelu':
      return v < 0 ? slope * v : v;
    case 'leakyrelu':
      return v < 0 ? leaky * v : v;
    case 'sigmoid':
      return 1 / (1 + Math.exp(-v));
    case 'elu':
      return v > 0 ? v : Math.exp(v) - 1;
  }
}

export interface RefOptions {
  a: Float32Array;
  b: Float32Array;
  m: number;
  n: number;
  k: number;
  transposeA?: boolean;
  transposeB?: boolean;
  batchA?: number;
  batchB?: number;
  /** [n], [m, n] or [batch, m, n]. */
  bias?: Float32Array;
  activation?: Act;
  leaky?: number;
  /** prelu slopes, shaped like bias. */
  alpha?: Float32Array;
}

function epilogueIndex(len: number, bi: number, i: number, j: number, m: number, n: number): number {
  if (len === n) return j;
  if (len === m * n) return i * n + j;
  return (bi * m + i) * n + j;
}

/** Naive float64 batched GEMM with bias and activation, the definition the kernel must match. */
export function referenceGemm(o: RefOptions): Float64Array {
  const { a, b, m, n, k, transposeA = false, transposeB = false, batchA = 1, batchB = 1 } = o;
  const batch = Math.max(batchA, batchB);
  const out = new Float64Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    const aBase = (batchA === 1 ? 0 : bi) * m * k;
    const bBase = (batchB === 1 ? 0 : bi) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = transposeA ? a[aBase + p * m + i] : a[aBase + i * k + p];
          const bv = transposeB ? b[bBase + j * k + p] : b[bBase + p * n + j];
          s += av * bv;
        }
        if (o.bias) s += o.bias[epilogueIndex(o.bias.length, bi, i, j, m, n)];
        const slope = o.alpha ? o.alpha[epilogueIndex(o.alpha.length, bi, i, j, m, n)] : 0;
        out[(bi * m + i) * n + j] = activate(o.activation ?? 'linear', s, slope, o.leaky ?? 0.2);
      }
    }
  }
  return out;
}

/** Largest |x - ref| relative to the largest |ref| (1 when ref is all zeros). */
export function maxRelError(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (x.length !== ref.length) return Infinity;
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(x[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / Math.max(scale, 1);
}

/** Starts tfjs's wasm backend (SIMD build, single-threaded under Node) as rpv does. */
export async function startWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const require = createRequire(import.meta.url);
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not start');
  await tf.ready();
}
