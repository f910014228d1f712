/**
 * Finding and loading rpv's native addon (build/Release/rpv_matmul.node, built by `npm install`
 * through src/native/build.mjs): the GEMM, the grid encoder's frame statistics and a posix_spawn
 * for ffmpeg. Loading never throws: a missing or broken binary gives `{ addon: null, reason }` so
 * callers fall back to tfjs-wasm's own kernels, the JS grid statistics and child_process.
 *
 * Every function of the addon throws a JavaScript Error (code ERR_RPV_NATIVE) for a C++ failure
 * inside it, on any of its threads: `rpv native: <function>: out of memory: cannot allocate <n>
 * bytes (...) of scratch; ...` when kernel scratch cannot be allocated (src/native/napi_exports.h).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../util/errors.js';

/** Instruction sets the addon's microkernel can run. */
export type MatmulIsa = 'avx2-fma' | 'scalar';

/** The addon's raw interface (see src/native/addon.cc). */
export interface NativeAddon {
  /** C = act(op(A) op(B) + bias); every index touched is bounds-checked first. */
  gemm(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    params: Float64Array,
    bias?: Float32Array | null,
    alpha?: Float32Array | null,
  ): void;
  /** Resizes the kernels' thread pool (caller included); returns the size. */
  setThreads(threads: number): number;
  /** The pool's size: setThreads's, else the CPUs this process may use (as defaultThreads()). */
  threads(): number;
  isa(): MatmulIsa;
  setIsa(isa: 'auto' | MatmulIsa): MatmulIsa;
  detectedIsa(): MatmulIsa;
  /** Bytes of kernel scratch held now, by every thread (src/native/scratch.h); absent from older addons. */
  scratchBytes?(): number;
  /** Test hook: scratch requests above `bytes` fail as a failed allocation would; null lifts the limit. */
  setScratchLimit?(bytes: number | null): void;
  /** Length of the params array gemm expects. */
  paramCount: number;
  /** grid-v1 frame statistics (src/native/grid.cc); absent from addons built before it. */
  gridSums?(rgb: Uint8Array, size: number, cells: number, out: Float64Array): void;
  /**
   * posix_spawn of `file` (PATH search) with `fds[i]` as its descriptor i (-1: /dev/null);
   * `onExit(code, signal)` once on the event loop (code -1 when signalled). Linux only; absent
   * from older addons. Throws with the errno name as `code` when it cannot start.
   */
  spawnFiles?(file: string, args: string[], fds: number[], onExit: (code: number, signal: number) => void): number;
  /**
   * Frozen weights used in place (src/native/frozen.cc): present where the platform maps files
   * (POSIX). A weight descriptor is a Float64Array [mapId, byteOffset, dtype (0 F32, 1 F16,
   * 2 BF16), rows, cols]; heap offsets count floats.
   */
  mapFile?(path: string): [id: number, bytes: number];
  unmapFile?(id: number): boolean;
  /** Bytes of the mapping resident in memory now (mincore); -1 when unknown. */
  mappedResident?(id: number): number;
  /** transpose: out = x W^T (+ bias) [rows, W.rows]; else out = x W [rows, W.cols]. */
  frozenMatmul?(heap: Float32Array, xOff: number, rows: number, weight: Float64Array, transpose: boolean, outOff: number, bias?: Float32Array | null): void;
  /** out[i, :] = table[ids[i], :] in float32. */
  gatherRows?(heap: Float32Array, outOff: number, table: Float64Array, ids: Int32Array): void;
  /** out[i] = hash(i, seedMix) >= threshold ? x[i] * keep : 0 (counter-based dropout; see pointwise.cc). */
  dropoutScale?(heap: Float32Array, xOff: number, n: number, seedMix: number, threshold: number, keep: number, outOff: number): void;
  /** out = silu(g) * u over n floats (pointwise.cc). */
  swiglu?(heap: Float32Array, gOff: number, uOff: number, n: number, outOff: number): void;
  /** The gradients of swiglu for g and u, given dy. */
  swigluGrad?(heap: Float32Array, gOff: number, uOff: number, dyOff: number, n: number, dgOff: number, duOff: number): void;
  /** GELU over n floats; kind 0 erf, 1 tanh, 2 quick (encoder.cc). */
  gelu?(heap: Float32Array, xOff: number, n: number, kind: number, outOff: number): void;
  /** dx = dy * gelu'(x). */
  geluGrad?(heap: Float32Array, xOff: number, dyOff: number, n: number, kind: number, dxOff: number): void;
  /** LayerNorm over rows of cols floats; bOff < 0: no bias. */
  layerNorm?(heap: Float32Array, xOff: number, rows: number, cols: number, wOff: number, bOff: number, eps: number, outOff: number): void;
  /** The gradient of layerNorm for x. */
  layerNormGrad?(heap: Float32Array, xOff: number, rows: number, cols: number, wOff: number, dyOff: number, eps: number, dxOff: number): void;
  /** Fused attention (attention.h); dims [batch, queries, keys, heads, kvHeads, headDim(, causal 1 | 0)]. */
  attentionForward?(heap: Float32Array, dims: Float64Array, qOff: number, kOff: number, vOff: number, maskOff: number, outOff: number, lseOff: number): void;
  attentionBackward?(
    heap: Float32Array, dims: Float64Array, qOff: number, kOff: number, vOff: number, maskOff: number, outOff: number, lseOff: number,
    doutOff: number, dqOff: number, dkOff: number, dvOff: number,
  ): void;
  /** loss[i] = -log softmax(h_i head^T)[targets[i]]; dhOff >= 0 also writes d(sum loss)/dh there. */
  crossEntropy?(heap: Float32Array, hOff: number, rows: number, head: Float64Array, targets: Int32Array, loss: Float32Array, dhOff: number, chunkRows: number): void;
}

/** Positions in gemm's Float64Array of parameters; mirrors `enum Param` in addon.cc. */
export const GemmParam = {
  batch: 0,
  m: 1,
  n: 2,
  k: 3,
  transposeA: 4,
  transposeB: 5,
  aOffset: 6,
  lda: 7,
  aBatchStride: 8,
  bOffset: 9,
  ldb: 10,
  bBatchStride: 11,
  cOffset: 12,
  ldc: 13,
  cBatchStride: 14,
  activation: 15,
  leakyAlpha: 16,
  biasOffset: 17,
  biasStrides: 18,
  alphaOffset: 21,
  alphaStrides: 22,
  count: 25,
} as const;

/** Activation codes of the fused epilogue (the same numbering as tfjs-wasm's). */
export const ACTIVATION_CODES = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
} as const;
export type FusedActivation = keyof typeof ACTIVATION_CODES;

export type AddonLoad =
  | { addon: NativeAddon; path: string; reason?: undefined }
  | { addon: null; path?: string; reason: string };

/** Where the addon may be, best first; both src/native and dist/native sit two levels down. */
export function addonCandidates(): string[] {
  const fromEnv = process.env.RPV_NATIVE_ADDON;
  if (fromEnv) return [fromEnv];
  return ['Release', 'Debug'].map((kind) =>
    fileURLToPath(new URL(`../../build/${kind}/rpv_matmul.node`, import.meta.url)),
  );
}

const cache = new Map<string, AddonLoad>();

/**
 * Loads the addon (once per path). `addonPath` overrides the search (RPV_NATIVE_ADDON does the
 * same from the environment).
 */
export function loadNativeAddon(options: { addonPath?: string } = {}): AddonLoad {
  const override = options.addonPath ?? process.env.RPV_NATIVE_ADDON;
  const candidates = options.addonPath ? [options.addonPath] : addonCandidates();
  // An addon this process already loaded stays usable even if its file is replaced or removed meanwhile.
  const path = candidates.find((p) => cache.get(p)?.addon) ?? candidates.find((p) => existsSync(p));
  if (!path) {
    return {
      addon: null,
      reason: override
        ? `addon not found at ${candidates[0]}`
        : `addon not built (no ${candidates[0]}; run \`node src/native/build.mjs\` with g++, make and python3 present)`,
    };
  }
  const cached = cache.get(path);
  if (cached) return cached;
  let result: AddonLoad;
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as NativeAddon;
    if (typeof addon.gemm !== 'function' || addon.paramCount !== GemmParam.count) {
      result = { addon: null, path, reason: `addon ${path} does not match this rpv version (rebuild it)` };
    } else {
      result = { addon, path };
    }
  } catch (err) {
    result = { addon: null, path, reason: `addon ${path} failed to load: ${errorMessage(err).split('\n')[0]}` };
  }
  cache.set(path, result);
  return result;
}
