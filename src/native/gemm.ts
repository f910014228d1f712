/**
 * A typed-array front end to the native GEMM, for direct use and tests:
 *   c[b] = act(op(a[b]) · op(b[b]) + bias)
 * with op(x) = x or xᵀ, row-major [batch, rows, cols] arrays, and a batch of 1 on either side
 * broadcast over the other.
 */
import { RpvError } from '../util/errors.js';
import { ACTIVATION_CODES, GemmParam, loadNativeAddon } from './addon.js';
import type { FusedActivation, NativeAddon } from './addon.js';

export interface SgemmOptions {
  /** op(A) is [m, k]: stored [batchA, m, k], or [batchA, k, m] when transposeA. */
  a: Float32Array;
  /** op(B) is [k, n]: stored [batchB, k, n], or [batchB, n, k] when transposeB. */
  b: Float32Array;
  m: number;
  n: number;
  k: number;
  transposeA?: boolean;
  transposeB?: boolean;
  /** Matrices in a (1 broadcasts one over the other side's batch). */
  batchA?: number;
  /** Matrices in b (1 broadcasts one over the other side's batch). */
  batchB?: number;
  /** Added before the activation: [n] (one row for all), [m, n], or [batch, m, n]. */
  bias?: Float32Array;
  activation?: FusedActivation;
  /** Slope of leakyrelu for x < 0. */
  leakyreluAlpha?: number;
  /** prelu slopes, shaped like bias. */
  preluAlpha?: Float32Array;
  /** Output buffer of batch·m·n floats; a new one when absent. */
  out?: Float32Array;
  /** Addon to use (defaults to the one loadNativeAddon finds). */
  addon?: NativeAddon;
}

/** Strides [batch, row, col] of an epilogue operand of `length` floats for a [batch, m, n] output. */
export function epilogueStrides(
  length: number,
  batch: number,
  m: number,
  n: number,
  what: string,
): [number, number, number] {
  if (length === n) return [0, 0, 1];
  if (length === m * n) return [0, n, 1];
  if (length === batch * m * n) return [m * n, n, 1];
  throw new RpvError(
    `sgemm: ${what} has ${length} values; expected ${n} ([n]), ${m * n} ([m, n]) or ${batch * m * n} ([batch, m, n])`,
  );
}

/** Multiplies with the native kernel; throws RpvError when the addon is missing or shapes disagree. */
export function sgemm(options: SgemmOptions): Float32Array {
  const { a, b, m, n, k, transposeA = false, transposeB = false, batchA = 1, batchB = 1 } = options;
  const addon = options.addon ?? requireAddon();
  for (const [name, v] of Object.entries({ m, n, k, batchA, batchB })) {
    if (!Number.isInteger(v) || v < 0) throw new RpvError(`sgemm: ${name} must be a non-negative integer, found ${v}`);
  }
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) {
    throw new RpvError(`sgemm: batches ${batchA} and ${batchB} do not broadcast (one must be 1 or both equal)`);
  }
  const batch = Math.max(batchA, batchB);
  if (a.length !== batchA * m * k) throw new RpvError(`sgemm: a has ${a.length} values; expected batchA·m·k = ${batchA * m * k}`);
  if (b.length !== batchB * k * n) throw new RpvError(`sgemm: b has ${b.length} values; expected batchB·k·n = ${batchB * k * n}`);
  const out = options.out ?? new Float32Array(batch * m * n);
  if (out.length !== batch * m * n) throw new RpvError(`sgemm: out has ${out.length} values; expected ${batch * m * n}`);
  const activation = options.activation ?? 'linear';
  const code = ACTIVATION_CODES[activation];
  if (code === undefined) throw new RpvError(`sgemm: unknown activation '${activation}'`);
  if (activation === 'prelu' && !options.preluAlpha) throw new RpvError('sgemm: activation prelu needs preluAlpha');

  const p = new Float64Array(GemmParam.count);
  p[GemmParam.batch] = batch;
  p[GemmParam.m] = m;
  p[GemmParam.n] = n;
  p[GemmParam.k] = k;
  p[GemmParam.transposeA] = transposeA ? 1 : 0;
  p[GemmParam.transposeB] = transposeB ? 1 : 0;
  p[GemmParam.lda] = transposeA ? m : k;
  p[GemmParam.aBatchStride] = batchA === 1 ? 0 : m * k;
  p[GemmParam.ldb] = transposeB ? k : n;
  p[GemmParam.bBatchStride] = batchB === 1 ? 0 : k * n;
  p[GemmParam.ldc] = n;
  p[GemmParam.cBatchStride] = m * n;
  p[GemmParam.activation] = code;
  p[GemmParam.leakyAlpha] = options.leakyreluAlpha ?? 0.2;
  if (options.bias) p.set(epilogueStrides(options.bias.length, batch, m, n, 'bias'), GemmParam.biasStrides);
  if (options.preluAlpha) {
    p.set(epilogueStrides(options.preluAlpha.length, batch, m, n, 'preluAlpha'), GemmParam.alphaStrides);
  }
  addon.gemm(a, b, out, p, options.bias ?? null, activation === 'prelu' ? options.preluAlpha : null);
  return out;
}

function requireAddon(): NativeAddon {
  const load = loadNativeAddon();
  if (!load.addon) throw new RpvError(`sgemm: native matmul unavailable: ${load.reason}`);
  return load.addon;
}
