/**
 * Causal self-attention with grouped-query heads, rotary positions and an optional KV cache.
 *
 * Grouped-query attention without repeating keys: the nh = nkv * g query heads are laid out
 * kv-major (as transformers' repeat_kv pairs query head h with key head h / g), so q reshaped to
 * [B * nkv, g * T, hd] multiplies keys [B * nkv, S, hd] in one batched matmul.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { applyRope } from './rope.js';
import { linear, loraDelta, type Linear, type LoraPair, type LoraRun } from './lora.js';
import type { DecoderConfig } from './config.js';

export interface AttentionWeights {
  /** q, k and v projections fused along the output axis: [hidden, (nh + 2 nkv) hd]. */
  qkv: Linear;
  o: Linear;
}

export interface AttentionLora {
  q?: LoraPair;
  k?: LoraPair;
  v?: LoraPair;
  o?: LoraPair;
}

/** Per-forward tensors shared by every layer. */
export interface AttentionContext {
  batch: number;
  /** New positions in this pass. */
  seqLen: number;
  /** [B, T, 1, hd] rotary tables (sin with its first half negated). */
  cos: tfc.Tensor;
  sinSigned: tfc.Tensor;
  /** Additive mask [B, 1, T, S]: 0 where attention is allowed, -1e9 elsewhere. */
  mask: tfc.Tensor;
  /** LoRA run settings (scaling, dropout); absent: base only. */
  loraRun?: (module: string) => LoraRun;
}

/** Keys and values of earlier positions for one layer: [B, nkv, S_past, hd]. */
export interface LayerCache {
  k: tfc.Tensor4D;
  v: tfc.Tensor4D;
}

export function attention(
  tf: typeof tfc,
  config: DecoderConfig,
  x: tfc.Tensor2D,
  w: AttentionWeights,
  lora: AttentionLora,
  ctx: AttentionContext,
  cache?: LayerCache,
): { out: tfc.Tensor2D; cache: LayerCache } {
  const { numHeads: nh, numKvHeads: nkv, headDim: hd } = config;
  const { batch: B, seqLen: T } = ctx;
  const g = nh / nkv;
  const qkv = linear(tf, x, w.qkv);
  let [q, k, v] = tf.split(qkv, [nh * hd, nkv * hd, nkv * hd], 1) as tfc.Tensor2D[];
  if (ctx.loraRun) {
    if (lora.q) q = tf.add(q, loraDelta(tf, x, lora.q, ctx.loraRun('q')));
    if (lora.k) k = tf.add(k, loraDelta(tf, x, lora.k, ctx.loraRun('k')));
    if (lora.v) v = tf.add(v, loraDelta(tf, x, lora.v, ctx.loraRun('v')));
  }
  // Fold 1/sqrt(hd) into q: [T, hd] is smaller than the [T, S] scores.
  const q4 = applyRope(tf, tf.reshape(tf.mul(q, 1 / Math.sqrt(hd)), [B, T, nh, hd]), ctx.cos, ctx.sinSigned);
  const k4 = applyRope(tf, tf.reshape(k, [B, T, nkv, hd]), ctx.cos, ctx.sinSigned);
  let kt = tf.transpose(k4, [0, 2, 1, 3]) as tfc.Tensor4D; // [B, nkv, T, hd]
  let vt = tf.transpose(tf.reshape(v, [B, T, nkv, hd]), [0, 2, 1, 3]) as tfc.Tensor4D;
  if (cache) {
    kt = tf.concat([cache.k, kt], 2);
    vt = tf.concat([cache.v, vt], 2);
  }
  const S = kt.shape[2];
  const qg = tf.reshape(tf.transpose(q4, [0, 2, 1, 3]), [B * nkv, g * T, hd]);
  const scores = tf.matMul(qg, tf.reshape(kt, [B * nkv, S, hd]), false, true); // [B*nkv, g*T, S]
  const probs = tf.softmax(tf.add(tf.reshape(scores, [B, nh, T, S]), ctx.mask));
  const ctxv = tf.matMul(tf.reshape(probs, [B * nkv, g * T, S]), tf.reshape(vt, [B * nkv, S, hd])); // [B*nkv, g*T, hd]
  const merged = tf.reshape(tf.transpose(tf.reshape(ctxv, [B, nh, T, hd]), [0, 2, 1, 3]), [B * T, nh * hd]);
  const out = linear(tf, merged as tfc.Tensor2D, w.o, lora.o, ctx.loraRun?.('o'));
  return { out, cache: { k: kt, v: vt } };
}
