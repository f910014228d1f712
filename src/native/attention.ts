/**
 * The fused causal attention of src/native/attention.cc as two tfjs kernels for the wasm backend:
 * `RpvAttention` (q, k, v, mask -> out, per-row log-sum-exp) and `RpvAttentionGrad` (-> dq, dk,
 * dv, recomputing the probabilities from the log-sum-exp). The [heads x queries x keys]
 * probabilities exist only a block of rows at a time, inside the kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { loadNativeAddon } from './addon.js';
import { heapOffset, heapView, isWasmBackend, type WasmBackendLike } from './wasm-heap.js';

const FORWARD = 'RpvAttention';
const BACKWARD = 'RpvAttentionGrad';

/** [batch, queries, keys, heads, kvHeads, headDim]. */
export type AttentionDims = [number, number, number, number, number, number];
/** The dims with the kernel's causal switch appended (1 causal, 0 not), then its segments switch (1: `mask` holds segment starts). */
type KernelDims = [...AttentionDims, number] | [...AttentionDims, number, number];

interface Args {
  inputs: Record<string, TensorInfo>;
  backend: unknown;
  attrs: NamedAttrMap;
}

const offsets = (backend: WasmBackendLike, tensors: TensorInfo[], kernel: string): number[] =>
  tensors.map((t, i) => heapOffset(backend, t, `${kernel}: operand ${i}`));

function forwardKernel({ inputs, backend, attrs }: Args): TensorInfo[] {
  if (!isWasmBackend(backend)) throw new RpvError(`${FORWARD}: needs the wasm backend`);
  const dims = attrs.dims as unknown as KernelDims;
  const [B, T, , nh, , hd] = dims;
  const out = backend.makeOutput([B * T, nh * hd], 'float32');
  const lse = backend.makeOutput([B, nh, T], 'float32');
  const [q, k, v, mask, o, l] = offsets(backend, [inputs.q, inputs.k, inputs.v, inputs.mask, out, lse], FORWARD);
  loadNativeAddon().addon!.attentionForward!(heapView(backend), Float64Array.from(dims), q, k, v, mask, o, l);
  return [out, lse];
}

function backwardKernel({ inputs, backend, attrs }: Args): TensorInfo[] {
  if (!isWasmBackend(backend)) throw new RpvError(`${BACKWARD}: needs the wasm backend`);
  const dims = attrs.dims as unknown as KernelDims;
  const [B, T, S, nh, nkv, hd] = dims;
  const dq = backend.makeOutput([B * T, nh * hd], 'float32');
  const dk = backend.makeOutput([B * S, nkv * hd], 'float32');
  const dv = backend.makeOutput([B * S, nkv * hd], 'float32');
  const offs = offsets(backend, [inputs.q, inputs.k, inputs.v, inputs.mask, inputs.out, inputs.lse, inputs.dout, dq, dk, dv], BACKWARD);
  const [q, k, v, mask, o, l, dout, dqo, dko, dvo] = offs;
  loadNativeAddon().addon!.attentionBackward!(heapView(backend), Float64Array.from(dims), q, k, v, mask, o, l, dout, dqo, dko, dvo);
  return [dq, dk, dv];
}

let registered: boolean | null = null;

/** Whether the fused attention runs here (wasm backend, an addon that has it, RPV_FUSED_ATTENTION not 0). */
export function nativeAttentionAvailable(): boolean {
  if (tf.getBackend() !== 'wasm' || process.env.RPV_FUSED_ATTENTION === '0') return false;
  if (registered === null) {
    const addon = loadNativeAddon().addon;
    registered = typeof addon?.attentionForward === 'function' && typeof addon?.attentionBackward === 'function';
    if (registered) {
      if (!tf.getKernel(FORWARD, 'wasm')) tf.registerKernel({ kernelName: FORWARD, backendName: 'wasm', kernelFunc: forwardKernel as unknown as KernelFunc });
      if (!tf.getKernel(BACKWARD, 'wasm')) tf.registerKernel({ kernelName: BACKWARD, backendName: 'wasm', kernelFunc: backwardKernel as unknown as KernelFunc });
    }
  }
  return registered;
}

const run = (name: string, inputs: Record<string, tf.Tensor>, dims: KernelDims) =>
  tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, { dims } as unknown as NamedAttrMap) as unknown as tf.Tensor[];

/**
 * softmax(q k^T + mask) v per head, differentiable in q, k and v; keeps only q, k, v, the output
 * and one log-sum-exp per row for the backward pass. Call when nativeAttentionAvailable().
 * `causal` (default): columns past each block of queries' last position are skipped, and the mask
 * must hide the later keys within a block (the decoder's mask does); false: every key is read, the
 * mask alone decides (an encoder passes zeros), and keys may be fewer than queries.
 */
export function fusedAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, mask: tf.Tensor, shape: AttentionDims, causal = true): tf.Tensor2D {
  return fused(q, k, v, mask, [...shape, causal ? 1 : 0]);
}

/**
 * Block-diagonal causal attention over packed rows (several samples in a row): `starts` [B, T]
 * float32 holds, for each query, the first position of its sample, so query i reads keys
 * [starts[i], i] only. No [T x S] mask exists; the kernel computes, per block of 48 query rows,
 * only the columns its samples span.
 */
export function fusedSegmentAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, starts: tf.Tensor, shape: AttentionDims): tf.Tensor2D {
  return fused(q, k, v, starts, [...shape, 1, 1]);
}

function fused(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, mask: tf.Tensor, dims: KernelDims): tf.Tensor2D {
  const f = tf.customGrad(((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor, save: tf.GradSaveFunc) => {
    const [out, lse] = run(FORWARD, { q: qi, k: ki, v: vi, mask }, dims);
    save([qi, ki, vi, mask, out, lse]);
    return {
      value: out,
      gradFunc: (dout: tf.Tensor, [qs, ks, vs, ms, os, ls]: tf.Tensor[]) => {
        const grads = run(BACKWARD, { q: qs, k: ks, v: vs, mask: ms, out: os, lse: ls, dout }, dims);
        // Only this op reads dout: free it now rather than when the whole backward pass ends.
        dout.dispose();
        return grads;
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(q, k, v) as tf.Tensor2D;
}
