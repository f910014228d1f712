/**
 * Row gather for the wasm backend: `RpvTakeRows` copies whole rows of a float32 [R, C] tensor
 * inside the wasm heap (one memmove per row), where tfjs-wasm's GatherV2 computes every element's
 * index: 50 ns an element, 7% of the tiny bench model's step. Needs no addon, only the heap.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { heapOffset, heapView, isWasmBackend } from './wasm-heap.js';

const KERNEL = 'RpvTakeRows';

function kernel({ inputs, backend, attrs }: { inputs: Record<string, TensorInfo>; backend: unknown; attrs: NamedAttrMap }): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${KERNEL}: needs the wasm backend`);
  const x = inputs.x;
  const rows = attrs.rows as unknown as Int32Array;
  if (x.shape.length !== 2 || x.dtype !== 'float32') throw new RpvError(`${KERNEL}: expects a float32 matrix, got ${x.dtype} [${x.shape}]`);
  const [R, C] = x.shape;
  const out = backend.makeOutput([rows.length, C], 'float32');
  const xOff = heapOffset(backend, x, `${KERNEL}: input`);
  const outOff = heapOffset(backend, out, `${KERNEL}: output`);
  const heap = heapView(backend);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (!(r >= 0 && r < R)) throw new RpvError(`${KERNEL}: row ${r} (index ${i}) is outside [0, ${R})`);
    heap.copyWithin(outOff + i * C, xOff + r * C, xOff + (r + 1) * C);
  }
  return out;
}

/** Whether rows are taken in the heap here (the wasm backend). */
export function takeRowsAvailable(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  if (!tf.getKernel(KERNEL, 'wasm')) tf.registerKernel({ kernelName: KERNEL, backendName: 'wasm', kernelFunc: kernel as unknown as KernelFunc });
  return true;
}

/** x[rows] for a float32 [R, C] x (call when takeRowsAvailable()); not differentiable by itself. */
export function takeRows(x: tf.Tensor2D, rows: Int32Array): tf.Tensor2D {
  return tf.engine().runKernel(KERNEL, { x } as unknown as tf.NamedTensorMap, { rows } as unknown as NamedAttrMap) as tf.Tensor2D;
}
