/**
 * The encoder-block kernels of src/native/encoder.cc as tfjs kernels for the wasm backend:
 * `RpvGelu` / `RpvGeluGrad` (erf, tanh and quick forms) and `RpvLayerNorm` / `RpvLayerNormGrad`
 * (per row, with bias), each one pass on every core where tfjs-wasm runs a chain of
 * single-threaded element-wise and reduction kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { loadNativeAddon } from './addon.js';
import { heapOffset, heapView, isWasmBackend } from './wasm-heap.js';

export type NativeGeluKind = 'erf' | 'tanh' | 'quick';
const KIND_CODES: Record<NativeGeluKind, number> = { erf: 0, tanh: 1, quick: 2 };

const GELU = 'RpvGelu';
const GELU_GRAD = 'RpvGeluGrad';
const LAYER_NORM = 'RpvLayerNorm';
const LAYER_NORM_GRAD = 'RpvLayerNormGrad';

interface Args {
  inputs: Record<string, TensorInfo>;
  backend: unknown;
  attrs: NamedAttrMap;
}

const size = (t: TensorInfo) => t.shape.reduce((a, b) => a * b, 1);

function geluKernel({ inputs, backend, attrs }: Args): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${GELU}: needs the wasm backend`);
  const out = backend.makeOutput(inputs.x.shape, 'float32');
  const x = heapOffset(backend, inputs.x, `${GELU}: x`);
  loadNativeAddon().addon!.gelu!(heapView(backend), x, size(out), attrs.kind as number, heapOffset(backend, out, `${GELU}: out`));
  return out;
}

function geluGradKernel({ inputs, backend, attrs }: Args): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${GELU_GRAD}: needs the wasm backend`);
  if (size(inputs.dy) !== size(inputs.x)) throw new RpvError(`${GELU_GRAD}: dy has shape [${inputs.dy.shape}], x [${inputs.x.shape}]`);
  const dx = backend.makeOutput(inputs.x.shape, 'float32');
  const [x, dy, o] = [heapOffset(backend, inputs.x, `${GELU_GRAD}: x`), heapOffset(backend, inputs.dy, `${GELU_GRAD}: dy`), heapOffset(backend, dx, `${GELU_GRAD}: dx`)];
  loadNativeAddon().addon!.geluGrad!(heapView(backend), x, dy, size(dx), attrs.kind as number, o);
  return dx;
}

function layerNormKernel({ inputs, backend, attrs }: Args): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${LAYER_NORM}: needs the wasm backend`);
  const cols = inputs.x.shape[inputs.x.shape.length - 1];
  const rows = size(inputs.x) / cols;
  if (size(inputs.weight) !== cols || (inputs.bias && size(inputs.bias) !== cols)) throw new RpvError(`${LAYER_NORM}: weight and bias must have ${cols} values`);
  const out = backend.makeOutput(inputs.x.shape, 'float32');
  const b = inputs.bias ? heapOffset(backend, inputs.bias, `${LAYER_NORM}: bias`) : -1;
  loadNativeAddon().addon!.layerNorm!(
    heapView(backend), heapOffset(backend, inputs.x, `${LAYER_NORM}: x`), rows, cols, heapOffset(backend, inputs.weight, `${LAYER_NORM}: weight`), b,
    attrs.eps as number, heapOffset(backend, out, `${LAYER_NORM}: out`),
  );
  return out;
}

function layerNormGradKernel({ inputs, backend, attrs }: Args): TensorInfo {
  if (!isWasmBackend(backend)) throw new RpvError(`${LAYER_NORM_GRAD}: needs the wasm backend`);
  const cols = inputs.x.shape[inputs.x.shape.length - 1];
  const rows = size(inputs.x) / cols;
  if (size(inputs.weight) !== cols || size(inputs.dy) !== size(inputs.x)) throw new RpvError(`${LAYER_NORM_GRAD}: operands' shapes disagree`);
  const dx = backend.makeOutput(inputs.x.shape, 'float32');
  loadNativeAddon().addon!.layerNormGrad!(
    heapView(backend), heapOffset(backend, inputs.x, `${LAYER_NORM_GRAD}: x`), rows, cols, heapOffset(backend, inputs.weight, `${LAYER_NORM_GRAD}: weight`),
    heapOffset(backend, inputs.dy, `${LAYER_NORM_GRAD}: dy`), attrs.eps as number, heapOffset(backend, dx, `${LAYER_NORM_GRAD}: dx`),
  );
  return dx;
}

/** Whether the encoder kernels run in the addon here (wasm backend, an addon that has them, RPV_NATIVE_ENCODER not 0). */
export function nativeEncoderAvailable(): boolean {
  if (tf.getBackend() !== 'wasm' || process.env.RPV_NATIVE_ENCODER === '0') return false;
  const addon = loadNativeAddon().addon;
  if (typeof addon?.gelu !== 'function' || typeof addon?.geluGrad !== 'function' || typeof addon?.layerNorm !== 'function' || typeof addon?.layerNormGrad !== 'function') return false;
  const kernels: [string, (a: Args) => TensorInfo][] = [[GELU, geluKernel], [GELU_GRAD, geluGradKernel], [LAYER_NORM, layerNormKernel], [LAYER_NORM_GRAD, layerNormGradKernel]];
  for (const [kernelName, fn] of kernels) {
    if (!tf.getKernel(kernelName, 'wasm')) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: fn as unknown as KernelFunc });
  }
  return true;
}

const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, number>) =>
  tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as unknown as NamedAttrMap) as tf.Tensor;

/** gelu(x) (call when nativeEncoderAvailable()). */
export function nativeGelu(x: tf.Tensor, kind: NativeGeluKind): tf.Tensor {
  return run(GELU, { x }, { kind: KIND_CODES[kind] });
}

/** dy * gelu'(x). */
export function nativeGeluGrad(x: tf.Tensor, dy: tf.Tensor, kind: NativeGeluKind): tf.Tensor {
  return run(GELU_GRAD, { x, dy }, { kind: KIND_CODES[kind] });
}

/** LayerNorm over the last axis. */
export function nativeLayerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | undefined, eps: number): tf.Tensor {
  return run(LAYER_NORM, bias ? { x, weight, bias } : { x, weight }, { eps });
}

/** The gradient of LayerNorm for x, given dy. */
export function nativeLayerNormGrad(x: tf.Tensor, weight: tf.Tensor, dy: tf.Tensor, eps: number): tf.Tensor {
  return run(LAYER_NORM_GRAD, { x, weight, dy }, { eps });
}
