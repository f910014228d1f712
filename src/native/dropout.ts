/**
 * Counter-based dropout for the LoRA branch on the wasm backend: `RpvDropoutScale` multiplies a
 * tensor by its dropout mask (scaling folded in) in the addon, on every core, without the mask
 * ever existing. The decision for element i is hash(i, seed) >= threshold, the same function as
 * the JavaScript mask of src/model/lora.ts, so both routes draw identical masks.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { loadNativeAddon } from './addon.js';
import { heapOffset, heapView, isWasmBackend } from './wasm-heap.js';

const KERNEL = 'RpvDropoutScale';

function kernel({ inputs, backend, attrs }: { inputs: Record<string, TensorInfo>; backend: unknown; attrs: NamedAttrMap }): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${KERNEL}: needs the wasm backend`);
  const x = inputs.x;
  const out = backend.makeOutput(x.shape, 'float32');
  const heap = heapView(backend);
  const xOff = heapOffset(backend, x, `${KERNEL}: input`);
  const outOff = heapOffset(backend, out, `${KERNEL}: output`);
  const n = x.shape.reduce((a, b) => a * b, 1);
  loadNativeAddon().addon!.dropoutScale!(heap, xOff, n, attrs.seedMix as number, attrs.threshold as number, attrs.keep as number, outOff);
  return out;
}


/** Whether x * mask can run natively here (wasm backend and an addon with dropoutScale). */
export function nativeDropoutAvailable(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  // Asked each time (the addon load is cached): an answer kept from another backend or addon would go stale.
  if (typeof loadNativeAddon().addon?.dropoutScale !== 'function') return false;
  if (!tf.getKernel(KERNEL, 'wasm')) tf.registerKernel({ kernelName: KERNEL, backendName: 'wasm', kernelFunc: kernel as unknown as KernelFunc });
  return true;
}

/** x * mask, mask[i] = hash(i, seedMix) >= threshold ? keep : 0 (call when nativeDropoutAvailable()). */
export function nativeDropoutScale<T extends tf.Tensor>(x: T, seedMix: number, threshold: number, keep: number): T {
  return tf.engine().runKernel(KERNEL, { x } as unknown as tf.NamedTensorMap, { seedMix, threshold, keep } as unknown as NamedAttrMap) as unknown as T;
}
