/**
 * Registers rpv's native GEMM as the tfjs wasm backend's `BatchMatMul` and `_FusedMatMul`.
 *
 * tfjs-wasm under Node runs its matmul on one thread (its threaded build cannot start there);
 * the native kernel is cache-blocked, AVX2/FMA and multithreaded. It reads the operands straight
 * from the wasm heap and writes the result into an output the backend allocated, so no copies are
 * made. Cases it does not handle go to the original kernels, kept for that purpose:
 *   - non-float32 operands (tfjs-wasm supports float32 only; its error is kept),
 *   - a bias or prelu slope that cannot be described by [batch, row, col] strides.
 * Two places where it is right and tfjs-wasm 4.22 is not (test/native/tfjs-kernels.test.ts):
 *   - `_FusedMatMul` with a bias when batch > 1 or transposeA (the original mis-indexes the bias);
 *   - a batch broadcast beyond "equal batches or one side 1", e.g. [2, 1] with [1, 3]: tfjs
 *     allocates only max(batchA, batchB) matrices for the 6-matrix output; here every output
 *     matrix gets its NumPy-broadcast pair (one kernel call per output matrix).
 *
 * Environment: RPV_NATIVE_MATMUL=0 disables it, RPV_MATMUL_THREADS sets the threads,
 * RPV_MATMUL_ISA=scalar forces the portable kernel, RPV_NATIVE_ADDON points at another binary.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { ACTIVATION_CODES, GemmParam, loadNativeAddon } from './addon.js';
import type { MatmulIsa, NativeAddon } from './addon.js';
import { floatOffset, heapView, isWasmBackend } from './wasm-heap.js';

export interface InstallNativeMatmulOptions {
  /** Threads of the native pool, caller included; default RPV_MATMUL_THREADS, else the cores. */
  threads?: number;
  /** `scalar` forces the portable kernel; default RPV_MATMUL_ISA, else `auto` (best supported). */
  isa?: 'auto' | MatmulIsa;
  /** Addon binary to load instead of build/Release/rpv_matmul.node. */
  addonPath?: string;
}

export interface NativeMatmulInfo {
  /** The native kernels are registered for the wasm backend. */
  active: boolean;
  /** Why not, when inactive. */
  reason?: string;
  /** Threads the kernel uses (0 when inactive). */
  threads: number;
  /** Microkernel in use. */
  isa: MatmulIsa;
  /** Best microkernel this CPU supports. */
  detectedIsa?: MatmulIsa;
  /** The binary loaded. */
  addonPath?: string;
  /** One line for logs and `rpv env`. */
  summary: string;
}

export interface NativeMatmulStats {
  /** Matmuls the native kernel computed. */
  nativeCalls: number;
  /** Matmuls handed to tfjs-wasm's original kernels, by reason. */
  fallbacks: Record<string, number>;
}

const KERNELS = ['BatchMatMul', '_FusedMatMul'] as const;
type KernelName = (typeof KERNELS)[number];

interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: unknown;
  attrs?: NamedAttrMap;
}

let addon: NativeAddon | null = null;
let addonPath: string | undefined;
let originals: Map<KernelName, KernelConfig> | null = null;
let lastInfo: NativeMatmulInfo = inactive('not installed (call installNativeMatmul after the wasm backend is ready)');
const stats: NativeMatmulStats = { nativeCalls: 0, fallbacks: {} };
const params = new Float64Array(GemmParam.count);

function inactive(reason: string): NativeMatmulInfo {
  return {
    active: false,
    reason,
    threads: 0,
    isa: 'scalar',
    summary: `native matmul: off (${reason}); tfjs-wasm's own single-threaded matmul is used`,
  };
}

/**
 * The CPUs this process may use: its affinity mask (os.availableParallelism), capped by a cgroup
 * v2 CPU quota (a container limited to 2 CPUs on a 64-core host must not start 64 threads).
 * The addon sizes its pool the same way until told otherwise (defaultThreads in addon.cc: change both).
 */
export function defaultThreads(): number {
  const cpus = availableParallelism();
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    const limit = Math.ceil(Number(quota) / Number(period));
    if (quota !== 'max' && Number.isFinite(limit) && limit >= 1) return Math.min(cpus, limit);
  } catch {
    // No cgroup v2 CPU controller here: the affinity mask is the limit.
  }
  return cpus;
}

function parseThreads(value: string | number | undefined, source: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 256) {
    throw new RpvError(`native matmul: ${source} must be an integer from 1 to 256, found ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * Replaces the wasm backend's BatchMatMul and _FusedMatMul with the native kernel. Never throws
 * for a missing or broken addon: the result says `active: false` and why, and `summary` is the
 * one line to print. Calling it again only updates threads and isa.
 */
export function installNativeMatmul(options: InstallNativeMatmulOptions = {}): NativeMatmulInfo {
  if (process.env.RPV_NATIVE_MATMUL === '0') {
    uninstallNativeMatmul();
    lastInfo = inactive('disabled by RPV_NATIVE_MATMUL=0');
    return lastInfo;
  }
  const threads =
    parseThreads(options.threads, 'threads') ??
    parseThreads(process.env.RPV_MATMUL_THREADS, 'RPV_MATMUL_THREADS') ??
    defaultThreads();
  const isa = options.isa ?? (process.env.RPV_MATMUL_ISA as InstallNativeMatmulOptions['isa']) ?? 'auto';
  if (!['auto', 'scalar', 'avx2-fma'].includes(isa)) {
    throw new RpvError(`native matmul: isa must be auto, scalar or avx2-fma, found ${JSON.stringify(isa)}`);
  }
  const load = loadNativeAddon({ addonPath: options.addonPath });
  if (!load.addon) {
    uninstallNativeMatmul();
    lastInfo = inactive(load.reason);
    return lastInfo;
  }
  try {
    load.addon.setThreads(threads);
    load.addon.setIsa(isa);
  } catch (err) {
    uninstallNativeMatmul();
    lastInfo = inactive((err as Error).message);
    return lastInfo;
  }
  addon = load.addon;
  addonPath = load.path;
  if (!originals) {
    const found = new Map<KernelName, KernelConfig>();
    for (const name of KERNELS) {
      const config = tf.getKernel(name, 'wasm');
      if (!config) {
        lastInfo = inactive(`tfjs-wasm's ${name} kernel is not registered (import @tensorflow/tfjs-backend-wasm first)`);
        return lastInfo;
      }
      found.set(name, config);
    }
    for (const [name, config] of found) {
      tf.unregisterKernel(name, 'wasm');
      tf.registerKernel({
        kernelName: name,
        backendName: 'wasm',
        // The originals still serve fallbacks: keep their setup running on backend (re)starts.
        setupFunc: config.setupFunc,
        disposeFunc: config.disposeFunc,
        kernelFunc: (name === 'BatchMatMul' ? batchMatMul : fusedMatMul) as unknown as KernelFunc,
      });
    }
    originals = found;
  }
  const activeIsa = addon.isa();
  const actualThreads = addon.threads();
  lastInfo = {
    active: true,
    threads: actualThreads,
    isa: activeIsa,
    detectedIsa: addon.detectedIsa(),
    addonPath,
    summary: `native matmul: ${activeIsa}, ${actualThreads} thread${actualThreads === 1 ? '' : 's'} (${addonPath})`,
  };
  return lastInfo;
}

/** Puts tfjs-wasm's original kernels back (no-op when not installed). */
export function uninstallNativeMatmul(): void {
  if (!originals) return;
  for (const [name, config] of originals) {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(config);
  }
  originals = null;
  lastInfo = inactive('uninstalled');
}

/** State of the native matmul for `rpv env` and logs. */
export function describeNativeMatmul(): NativeMatmulInfo & { stats: NativeMatmulStats } {
  return { ...lastInfo, stats: nativeMatmulStats() };
}

/** Counts of native and fallback calls since the process started (or the last reset). */
export function nativeMatmulStats(options: { reset?: boolean } = {}): NativeMatmulStats {
  const copy = { nativeCalls: stats.nativeCalls, fallbacks: { ...stats.fallbacks } };
  if (options.reset) {
    stats.nativeCalls = 0;
    stats.fallbacks = {};
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Kernels

function fallback(name: KernelName, reason: string, args: KernelArgs): TensorInfo {
  stats.fallbacks[reason] = (stats.fallbacks[reason] ?? 0) + 1;
  const original = originals?.get(name);
  if (!original) throw new Error(`native matmul: ${name} fallback without the original kernel`);
  return (original.kernelFunc as unknown as (a: KernelArgs) => TensorInfo)(args);
}

interface Plan {
  outShape: number[];
  batch: number;
  m: number;
  n: number;
  k: number;
  aBatchStride: number;
  bBatchStride: number;
  /**
   * For a batch broadcast one stride cannot express (e.g. [2, 1] with [1, 3]): the a and b
   * matrix of every output matrix, NumPy-style; the kernel then runs once per output matrix.
   */
  pairs?: Int32Array;
}

/** Shapes of a batched matmul, or a fallback reason. */
function plan(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): Plan | string {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return `dtype ${a.dtype === 'float32' ? b.dtype : a.dtype}`;
  if (a.shape.length < 2 || b.shape.length < 2) return 'rank < 2';
  const ar = a.shape.length;
  const br = b.shape.length;
  const m = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
  const kA = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
  const kB = transposeB ? b.shape[br - 1] : b.shape[br - 2];
  const n = transposeB ? b.shape[br - 2] : b.shape[br - 1];
  if (kA !== kB) return 'inner dimensions differ';
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return 'batch shapes do not broadcast';
  }
  const batchA = tf.util.sizeFromShape(outerA);
  const batchB = tf.util.sizeFromShape(outerB);
  const batch = tf.util.sizeFromShape(outer);
  const result: Plan = {
    outShape: [...outer, m, n],
    batch,
    m,
    n,
    k: kA,
    aBatchStride: batchA === 1 ? 0 : m * kA,
    bBatchStride: batchB === 1 ? 0 : kA * n,
  };
  const plain = (batchA === batchB || batchA === 1 || batchB === 1) && batch === Math.max(batchA, batchB);
  if (!plain) result.pairs = broadcastPairs(outer, outerA, outerB);
  return result;
}

/** For each output matrix (row-major over `outer`), the index of its a and b matrices. */
function broadcastPairs(outer: number[], outerA: number[], outerB: number[]): Int32Array {
  const batch = tf.util.sizeFromShape(outer);
  const pairs = new Int32Array(2 * batch);
  const rank = outer.length;
  // Right-aligned strides of a and b over the output's batch dims; 0 where they broadcast.
  const stridesOf = (shape: number[]): number[] => {
    const strides = new Array<number>(rank).fill(0);
    let s = 1;
    for (let i = shape.length - 1, o = rank - 1; i >= 0; i--, o--) {
      strides[o] = shape[i] === 1 ? 0 : s;
      s *= shape[i];
    }
    return strides;
  };
  const sa = stridesOf(outerA);
  const sb = stridesOf(outerB);
  for (let f = 0; f < batch; f++) {
    let rest = f;
    let ia = 0;
    let ib = 0;
    for (let d = rank - 1; d >= 0; d--) {
      const idx = rest % outer[d];
      rest = Math.floor(rest / outer[d]);
      ia += idx * sa[d];
      ib += idx * sb[d];
    }
    pairs[2 * f] = ia;
    pairs[2 * f + 1] = ib;
  }
  return pairs;
}

/**
 * [batch, row, col] strides reading an epilogue operand (bias, prelu slope) of `shape` for an
 * output of `outShape` = [...batchDims, m, n]; null when strides cannot express it.
 */
function epilogueStrides(shape: number[], outShape: number[]): [number, number, number] | null {
  const r = shape.length;
  const or = outShape.length;
  const m = outShape[or - 2];
  const n = outShape[or - 1];
  const last = r >= 1 ? shape[r - 1] : 1;
  const second = r >= 2 ? shape[r - 2] : 1;
  if ((last !== n && last !== 1) || (second !== m && second !== 1)) return null;
  const colStride = last === 1 ? 0 : 1;
  const rowStride = second === 1 ? 0 : last;
  // Leading dims: tfjs-core has checked that they broadcast against the op's (unflattened) batch
  // dims, so a product of 1 broadcasts and a product equal to the flattened batch matches it.
  const leadSize = tf.util.sizeFromShape(shape.slice(0, Math.max(0, r - 2)));
  if (leadSize === 1) return [0, rowStride, colStride];
  if (leadSize === tf.util.sizeFromShape(outShape.slice(0, -2))) return [second * last, rowStride, colStride];
  return null;
}

function run(
  name: KernelName,
  args: KernelArgs,
  a: TensorInfo,
  b: TensorInfo,
  epilogue: {
    bias?: TensorInfo;
    alpha?: TensorInfo;
    activation: number;
    leakyAlpha: number;
  },
): TensorInfo {
  const attrs = args.attrs ?? {};
  const transposeA = !!attrs.transposeA;
  const transposeB = !!attrs.transposeB;
  const backend = args.backend;
  if (!addon || !isWasmBackend(backend)) return fallback(name, 'not a wasm backend', args);
  const p = plan(a, b, transposeA, transposeB);
  if (typeof p === 'string') return fallback(name, p, args);
  let biasStrides: [number, number, number] | null = null;
  let alphaStrides: [number, number, number] | null = null;
  if (epilogue.bias) {
    if (epilogue.bias.dtype !== 'float32') return fallback(name, `bias dtype ${epilogue.bias.dtype}`, args);
    biasStrides = epilogueStrides(epilogue.bias.shape, p.outShape);
    if (!biasStrides) return fallback(name, 'bias shape', args);
  }
  if (epilogue.activation === ACTIVATION_CODES.prelu) {
    if (!epilogue.alpha || epilogue.alpha.dtype !== 'float32') return fallback(name, 'prelu weights', args);
    alphaStrides = epilogueStrides(epilogue.alpha.shape, p.outShape);
    if (!alphaStrides) return fallback(name, 'prelu weights shape', args);
  }
  const out = backend.makeOutput(p.outShape, 'float32');
  if (p.batch === 0 || p.m === 0 || p.n === 0) {
    stats.nativeCalls++;
    return out;
  }
  const aOff = floatOffset(backend, a);
  const bOff = floatOffset(backend, b);
  const cOff = floatOffset(backend, out);
  const biasOff = epilogue.bias ? floatOffset(backend, epilogue.bias) : 0;
  const alphaOff = alphaStrides && epilogue.alpha ? floatOffset(backend, epilogue.alpha) : 0;
  if (aOff === null || bOff === null || cOff === null || biasOff === null || alphaOff === null) {
    // Unreachable with tfjs-wasm's 8-byte-aligned malloc; never read a misaligned float.
    (args.backend as { disposeData(id: object): void }).disposeData(out.dataId);
    return fallback(name, 'unaligned tensor', args);
  }
  params.fill(0);
  params[GemmParam.batch] = p.batch;
  params[GemmParam.m] = p.m;
  params[GemmParam.n] = p.n;
  params[GemmParam.k] = p.k;
  params[GemmParam.transposeA] = transposeA ? 1 : 0;
  params[GemmParam.transposeB] = transposeB ? 1 : 0;
  params[GemmParam.aOffset] = aOff;
  params[GemmParam.lda] = transposeA ? p.m : p.k;
  params[GemmParam.aBatchStride] = p.aBatchStride;
  params[GemmParam.bOffset] = bOff;
  params[GemmParam.ldb] = transposeB ? p.k : p.n;
  params[GemmParam.bBatchStride] = p.bBatchStride;
  params[GemmParam.cOffset] = cOff;
  params[GemmParam.ldc] = p.n;
  params[GemmParam.cBatchStride] = p.m * p.n;
  params[GemmParam.activation] = epilogue.activation;
  params[GemmParam.leakyAlpha] = epilogue.leakyAlpha;
  if (biasStrides) {
    params[GemmParam.biasOffset] = biasOff;
    params.set(biasStrides, GemmParam.biasStrides);
  }
  if (alphaStrides) {
    params[GemmParam.alphaOffset] = alphaOff;
    params.set(alphaStrides, GemmParam.alphaStrides);
  }
  const heap = heapView(backend);
  const biasHeap = biasStrides ? heap : null;
  const alphaHeap = alphaStrides ? heap : null;
  if (!p.pairs) {
    addon.gemm(heap, heap, heap, params, biasHeap, alphaHeap);
  } else {
    // One output matrix at a time, each with its own a, b (and epilogue batch) offsets.
    params[GemmParam.batch] = 1;
    for (let f = 0; f < p.batch; f++) {
      params[GemmParam.aOffset] = aOff + p.pairs[2 * f] * p.m * p.k;
      params[GemmParam.bOffset] = bOff + p.pairs[2 * f + 1] * p.k * p.n;
      params[GemmParam.cOffset] = cOff + f * p.m * p.n;
      if (biasStrides) params[GemmParam.biasOffset] = biasOff + f * biasStrides[0];
      if (alphaStrides) params[GemmParam.alphaOffset] = alphaOff + f * alphaStrides[0];
      addon.gemm(heap, heap, heap, params, biasHeap, alphaHeap);
    }
  }
  stats.nativeCalls++;
  return out;
}

function batchMatMul(args: KernelArgs): TensorInfo {
  const { a, b } = args.inputs;
  if (!a || !b) return fallback('BatchMatMul', 'missing input', args);
  return run('BatchMatMul', args, a, b, { activation: ACTIVATION_CODES.linear, leakyAlpha: 0 });
}

function fusedMatMul(args: KernelArgs): TensorInfo {
  const { a, b, bias, preluActivationWeights } = args.inputs;
  if (!a || !b) return fallback('_FusedMatMul', 'missing input', args);
  const attrs = args.attrs ?? {};
  const name = (attrs.activation as string | undefined) ?? 'linear';
  const code = (ACTIVATION_CODES as Record<string, number>)[name];
  if (code === undefined) return fallback('_FusedMatMul', `activation ${name}`, args);
  const leaky = attrs.leakyreluAlpha as number | undefined;
  return run('_FusedMatMul', args, a, b, {
    bias: bias ?? undefined,
    alpha: preluActivationWeights ?? undefined,
    activation: code,
    leakyAlpha: leaky ?? 0.2,
  });
}
