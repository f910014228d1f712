/**
 * Frozen weights in native memory, as stored on disk: the addon memory-maps safetensors files
 * and its kernels read F32/F16/BF16 weights where they lie, converting to float32 while packing
 * the GEMM's panels. Nothing of the frozen base enters the tfjs heap, whose wasm32 memory stops
 * at 4 GiB.
 *
 * Three tfjs kernels for the wasm backend work on these weights, reading their tensor inputs
 * from the wasm heap and writing their outputs there:
 *   RpvFrozenMatmul   y = x W^T (+ b) (a frozen linear's forward), or dx = dy W (its input gradient)
 *   RpvGatherRows     embedding lookup: rows of a mapped table
 *   RpvCrossEntropy   per-row -log softmax(h W^T)[target] and, optionally, d(sum)/dh, computed in
 *                     chunks of rows so the [rows x vocabulary] logits never exist whole
 * They run untaped (inside customGrad forwards), so the gradient tape never copies a weight.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { loadNativeAddon, type NativeAddon } from './addon.js';
import { heapOffset, heapView, isWasmBackend, type WasmBackendLike } from './wasm-heap.js';

/** Element types the kernels read. */
export type MappedDType = 'F32' | 'F16' | 'BF16';
const DTYPE_CODES: Record<MappedDType, number> = { F32: 0, F16: 1, BF16: 2 };
const DTYPE_BYTES: Record<MappedDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** A [rows, cols] row-major matrix inside a mapped file. */
export interface MappedMatrix {
  file: MappedFile;
  /** Byte offset of element [0, 0] in the file. */
  byteOffset: number;
  dtype: MappedDType;
  rows: number;
  cols: number;
  /** The descriptor the addon takes: [mapId, byteOffset, dtype code, rows, cols]. */
  desc: Float64Array;
}

function frozenAddon(): NativeAddon & Required<Pick<NativeAddon, 'mapFile' | 'unmapFile' | 'frozenMatmul' | 'gatherRows' | 'crossEntropy'>> {
  const load = loadNativeAddon();
  if (!load.addon) throw new RpvError(`frozen weights: native addon unavailable: ${load.reason}`);
  const a = load.addon;
  if (!a.mapFile || !a.unmapFile || !a.frozenMatmul || !a.gatherRows || !a.crossEntropy) {
    throw new RpvError('frozen weights: this native addon cannot map files (built before frozen weights, or not a POSIX platform); rebuild it with `node src/native/build.mjs`');
  }
  return a as ReturnType<typeof frozenAddon>;
}

/** Why mapped weights cannot be used in this process, or null when they can. */
export function mappedWeightsUnavailable(): string | null {
  const load = loadNativeAddon();
  if (!load.addon) return `native addon unavailable: ${load.reason}`;
  if (!load.addon.mapFile) return 'the native addon cannot map files on this platform (or predates mapped weights)';
  return null;
}

/** A file mapped read-only into this process (pages are read from disk on first use). */
export class MappedFile {
  private open = true;

  private constructor(
    readonly path: string,
    readonly id: number,
    readonly bytes: number,
  ) {}

  static open(path: string): MappedFile {
    const [id, bytes] = frozenAddon().mapFile(path);
    return new MappedFile(path, id, bytes);
  }

  get closed(): boolean {
    return !this.open;
  }

  /** A matrix inside the file; checked against the file's size here, and by the addon on use. */
  matrix(byteOffset: number, dtype: MappedDType, rows: number, cols: number): MappedMatrix {
    if (!(dtype in DTYPE_CODES)) throw new RpvError(`${this.path}: dtype ${dtype} cannot be used in place (F32, F16 or BF16)`);
    const end = byteOffset + rows * cols * DTYPE_BYTES[dtype];
    if (byteOffset % DTYPE_BYTES[dtype] !== 0) throw new RpvError(`${this.path}: tensor at byte ${byteOffset} is not aligned to its ${dtype} elements`);
    if (end > this.bytes) throw new RpvError(`${this.path}: tensor bytes [${byteOffset}, ${end}) lie beyond the file's ${this.bytes} bytes`);
    return { file: this, byteOffset, dtype, rows, cols, desc: Float64Array.of(this.id, byteOffset, DTYPE_CODES[dtype], rows, cols) };
  }

  /** Bytes of the file resident in memory now (-1 when the platform cannot tell). */
  residentBytes(): number {
    return this.open ? (frozenAddon().mappedResident?.(this.id) ?? -1) : 0;
  }

  /** Unmaps the file; later use of its matrices throws. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    frozenAddon().unmapFile(this.id);
  }
}

// ---------------------------------------------------------------------------------------------
// tfjs kernels

const KERNELS = {
  matmul: 'RpvFrozenMatmul',
  gather: 'RpvGatherRows',
  crossEntropy: 'RpvCrossEntropy',
} as const;

interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: unknown;
  attrs?: NamedAttrMap;
}

function wasmBackend(backend: unknown, kernel: string): WasmBackendLike {
  if (!isWasmBackend(backend)) throw new RpvError(`${kernel}: mapped weights need the wasm backend`);
  return backend;
}

const offsetOf = (backend: WasmBackendLike, t: TensorInfo, what: string): number => heapOffset(backend, t, `frozen weights: ${what}`);

function frozenMatmulKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const b = wasmBackend(backend, KERNELS.matmul);
  const x = inputs.x!;
  const desc = attrs!.weight as unknown as Float64Array;
  const transpose = attrs!.transpose as boolean;
  const bias = (attrs!.bias as unknown as Float32Array | undefined) ?? null;
  const [rows, inF] = x.shape;
  const expectIn = transpose ? desc[4] : desc[3];
  if (inF !== expectIn) throw new RpvError(`${KERNELS.matmul}: input has ${inF} columns, the weight expects ${expectIn}`);
  const out = b.makeOutput([rows, transpose ? desc[3] : desc[4]], 'float32');
  const heap = heapView(b);
  frozenAddon().frozenMatmul(heap, offsetOf(b, x, 'input'), rows, desc, transpose, offsetOf(b, out, 'output'), bias);
  return out;
}

function gatherKernel({ backend, attrs }: KernelArgs): TensorInfo {
  const b = wasmBackend(backend, KERNELS.gather);
  const desc = attrs!.table as unknown as Float64Array;
  const ids = attrs!.ids as unknown as Int32Array;
  const out = b.makeOutput([ids.length, desc[4]], 'float32');
  frozenAddon().gatherRows(heapView(b), offsetOf(b, out, 'output'), desc, ids);
  return out;
}

function crossEntropyKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const b = wasmBackend(backend, KERNELS.crossEntropy);
  const h = inputs.h!;
  const desc = attrs!.head as unknown as Float64Array;
  const targets = attrs!.targets as unknown as Int32Array;
  const grad = attrs!.grad as boolean;
  const chunkRows = attrs!.chunkRows as number;
  const [rows, hidden] = h.shape;
  if (hidden !== desc[4]) throw new RpvError(`${KERNELS.crossEntropy}: hidden states have ${hidden} columns, the head has ${desc[4]}`);
  const loss = b.makeOutput([rows], 'float32');
  const dh = grad ? b.makeOutput([rows, hidden], 'float32') : null;
  const heap = heapView(b);
  const lossOff = offsetOf(b, loss, 'loss');
  frozenAddon().crossEntropy(heap, offsetOf(b, h, 'hidden states'), rows, desc, targets, heap.subarray(lossOff, lossOff + rows), dh ? offsetOf(b, dh, 'gradient') : -1, chunkRows);
  return dh ? [loss, dh] : [loss];
}

let installed = false;

/** Registers the three kernels for the wasm backend (idempotent). */
export function installFrozenKernels(): void {
  if (installed) return;
  const kernels: [string, KernelFunc][] = [
    [KERNELS.matmul, frozenMatmulKernel as unknown as KernelFunc],
    [KERNELS.gather, gatherKernel as unknown as KernelFunc],
    [KERNELS.crossEntropy, crossEntropyKernel as unknown as KernelFunc],
  ];
  for (const [kernelName, kernelFunc] of kernels) {
    if (!tf.getKernel(kernelName, 'wasm')) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
  installed = true;
}

/** Run one of the kernels (not recorded on the gradient tape when called inside a customGrad forward). */
function runKernel<T extends tf.Tensor | tf.Tensor[]>(name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>): T {
  installFrozenKernels();
  return tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as NamedAttrMap) as unknown as T;
}

/** x [N, in] -> x W^T + b [N, out] with W [out, in] mapped. */
export function mappedLinearForward(x: tf.Tensor2D, w: MappedMatrix, bias?: Float32Array): tf.Tensor2D {
  return runKernel<tf.Tensor2D>(KERNELS.matmul, { x }, { weight: w.desc, transpose: true, bias });
}

/** dy [N, out] -> dy W [N, in] with W [out, in] mapped. */
export function mappedLinearBackward(dy: tf.Tensor2D, w: MappedMatrix): tf.Tensor2D {
  return runKernel<tf.Tensor2D>(KERNELS.matmul, { x: dy }, { weight: w.desc, transpose: false });
}

/** Rows `ids` of a mapped table, float32 [ids.length, cols]. */
export function mappedGatherRows(table: MappedMatrix, ids: Int32Array): tf.Tensor2D {
  return runKernel<tf.Tensor2D>(KERNELS.gather, {}, { table: table.desc, ids });
}

/**
 * Per-row cross-entropy of h [rows, hidden] against `head` [vocab, hidden]: loss [rows] and, with
 * `grad`, dh = d(sum loss)/dh [rows, hidden]. At most `chunkRows` rows of logits exist at a time.
 */
export function mappedCrossEntropy(h: tf.Tensor2D, head: MappedMatrix, targets: Int32Array, { grad, chunkRows }: { grad: boolean; chunkRows: number }): { loss: tf.Tensor1D; dh?: tf.Tensor2D } {
  const out = runKernel<tf.Tensor[]>(KERNELS.crossEntropy, { h }, { head: head.desc, targets, grad, chunkRows });
  return { loss: out[0] as tf.Tensor1D, dh: out[1] as tf.Tensor2D | undefined };
}
