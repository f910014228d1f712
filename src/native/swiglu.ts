/**
 * SwiGLU for the wasm backend in the addon: `RpvSwiglu` (gate, up -> silu(gate) * up) and
 * `RpvSwigluGrad` (-> d gate, d up), each one pass over its operands on every core, where tfjs-wasm
 * runs eleven single-threaded element-wise kernels (sigmoid, multiplies, adds) for the same.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { loadNativeAddon } from './addon.js';
import { heapOffset, heapView, isWasmBackend, type WasmBackendLike } from './wasm-heap.js';

const FORWARD = 'RpvSwiglu';
const BACKWARD = 'RpvSwigluGrad';

/** The operands' heap offsets; all must hold as many floats as the first. */
function offsets(backend: WasmBackendLike, tensors: TensorInfo[], kernel: string): number[] {
  const n = tensors[0].shape.reduce((a, b) => a * b, 1);
  return tensors.map((t, i) => {
    if (t.shape.reduce((a, b) => a * b, 1) !== n) throw new RpvError(`${kernel}: operand ${i} has shape [${t.shape}], operand 0 [${tensors[0].shape}]`);
    return heapOffset(backend, t, `${kernel}: operand ${i}`);
  });
}

function forwardKernel({ inputs, backend }: { inputs: Record<string, TensorInfo>; backend: unknown }): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${FORWARD}: needs the wasm backend`);
  const out = backend.makeOutput(inputs.gate.shape, 'float32');
  const [g, u, o] = offsets(backend, [inputs.gate, inputs.up, out], FORWARD);
  loadNativeAddon().addon!.swiglu!(heapView(backend), g, u, out.shape.reduce((a, b) => a * b, 1), o);
  return out;
}

function backwardKernel({ inputs, backend }: { inputs: Record<string, TensorInfo>; backend: unknown }): TensorInfo[] {
  if (!isWasmBackend(backend)) throw new RpvError(`${BACKWARD}: needs the wasm backend`);
  const dg = backend.makeOutput(inputs.gate.shape, 'float32');
  const du = backend.makeOutput(inputs.gate.shape, 'float32');
  const [g, u, dy, dgo, duo] = offsets(backend, [inputs.gate, inputs.up, inputs.dy, dg, du], BACKWARD);
  loadNativeAddon().addon!.swigluGrad!(heapView(backend), g, u, dy, dg.shape.reduce((a, b) => a * b, 1), dgo, duo);
  return [dg, du];
}

/** Whether SwiGLU runs in the addon here (wasm backend, an addon that has it, RPV_NATIVE_SWIGLU not 0). */
export function nativeSwigluAvailable(): boolean {
  if (tf.getBackend() !== 'wasm' || process.env.RPV_NATIVE_SWIGLU === '0') return false;
  // Asked each time (the addon load is cached): an answer kept from another backend or addon would go stale.
  const addon = loadNativeAddon().addon;
  if (typeof addon?.swiglu !== 'function' || typeof addon?.swigluGrad !== 'function') return false;
  if (!tf.getKernel(FORWARD, 'wasm')) tf.registerKernel({ kernelName: FORWARD, backendName: 'wasm', kernelFunc: forwardKernel as unknown as KernelFunc });
  if (!tf.getKernel(BACKWARD, 'wasm')) tf.registerKernel({ kernelName: BACKWARD, backendName: 'wasm', kernelFunc: backwardKernel as unknown as KernelFunc });
  return true;
}

/** silu(gate) * up (call when nativeSwigluAvailable()). */
export function nativeSwiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel(FORWARD, { gate, up } as unknown as tf.NamedTensorMap) as tf.Tensor;
}

/** [d gate, d up] of silu(gate) * up for the output gradient dy (call when nativeSwigluAvailable()). */
export function nativeSwigluGrad(gate: tf.Tensor, up: tf.Tensor, dy: tf.Tensor): [tf.Tensor, tf.Tensor] {
  return tf.engine().runKernel(BACKWARD, { gate, up, dy } as unknown as tf.NamedTensorMap) as unknown as [tf.Tensor, tf.Tensor];
}
