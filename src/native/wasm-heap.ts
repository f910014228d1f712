/**
 * Reading and writing tensors of tfjs's wasm backend in place: the backend keeps every tensor in
 * its WebAssembly heap (`dataIdMap.get(dataId).memoryOffset` into `wasm.HEAPU8.buffer`), so a
 * native kernel can take a Float32Array view of the heap and work on offsets into it.
 *
 * An allocation can grow the heap, which replaces its ArrayBuffer and detaches earlier views:
 * allocate outputs first (`makeOutput`), then take the view.
 */
import type { DataType, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';

interface WasmTensorData {
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
}

/** The parts of tfjs-wasm's BackendWasm the native kernels touch. */
export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: object): boolean | void;
}

export function isWasmBackend(backend: unknown): backend is WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  return !!b && !!b.wasm && !!b.dataIdMap && typeof b.makeOutput === 'function';
}

let heapBuffer: ArrayBufferLike | null = null;
let heapF32: Float32Array | null = null;

/** A Float32Array over the whole heap, current as of now (take it after allocating outputs). */
export function heapView(backend: WasmBackendLike): Float32Array {
  const buffer = backend.wasm.HEAPU8.buffer;
  if (buffer !== heapBuffer || heapF32 === null || heapF32.length * 4 !== buffer.byteLength) {
    heapBuffer = buffer;
    heapF32 = new Float32Array(buffer, 0, buffer.byteLength >>> 2);
  }
  return heapF32;
}

/**
 * Float index of a float32 tensor's data in the heap; throws naming `what` (e.g. `RpvSwiglu: operand
 * 1`) when the tensor is not float32 or not in this heap. What every native kernel reads operands by.
 */
export function heapOffset(backend: WasmBackendLike, t: TensorInfo, what: string): number {
  const off = floatOffset(backend, t);
  if (off === null || t.dtype !== 'float32') throw new RpvError(`${what} is not a float32 tensor of the wasm heap`);
  return off;
}

/** Float index of a tensor's data in the heap, or null when it is not 4-byte aligned (never seen). */
export function floatOffset(backend: WasmBackendLike, t: TensorInfo): number | null {
  const data = backend.dataIdMap.get(t.dataId);
  if (!data || data.memoryOffset == null || data.memoryOffset % 4 !== 0) return null;
  return data.memoryOffset / 4;
}
