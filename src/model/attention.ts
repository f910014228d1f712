/**
 * Causal self-attention with grouped-query heads, rotary positions and an optional KV cache.
 *
 * Grouped-query attention without repeating keys: the nh = nkv * g query heads are laid out
 * kv-major (as transformers' repeat_kv pairs query head h with key head h / g), so q reshaped to
 * [B * nkv, g * T, hd] multiplies keys [B * nkv, S, hd] in one batched matmul. Projections stay
 * separate (no fused qkv): a fused matmul would need a split, whose copies cost more here than
 * the extra matmul calls.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { applyRope } from './rope.js';
import { linear, type Linear, type LoraPair, type LoraRun } from './lora.js';
import type { DecoderConfig } from './config.js';
import { fusedAttention, fusedSegmentAttention } from '../native/attention.js';

export interface AttentionWeights {
  q: Linear;
  k: Linear;
  v: Linear;
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
  /** Rotary tables for queries [B*T, nh*hd] (1/sqrt(hd) folded in) and keys [B*T, nkv*hd]. */
  cosQ: tfc.Tensor2D;
  sinQ: tfc.Tensor2D;
  cosK: tfc.Tensor2D;
  sinK: tfc.Tensor2D;
  /** rotate_half as a [hd, hd] matrix. */
  rotate: tfc.Tensor2D;
  /** Additive mask [B, 1, T, S]: 0 where attention is allowed, -1e9 elsewhere. */
  mask: tfc.Tensor;
  /** LoRA run settings (scaling, dropout); absent: base only. */
  loraRun?: (module: string) => LoraRun;
  /**
   * Use the native fused attention (no KV cache wanted: training, evaluation, scoring): the
   * [heads x queries x keys] probabilities are never kept. Rows whose every key is masked (left
   * padding) give zeros there instead of tfjs's uniform average; no real position reads them.
   */
  fused?: boolean;
  /** With `fused`: `mask` holds segment starts [B, T] (packed rows), not an additive mask. */
  segments?: boolean;
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
): { out: tfc.Tensor2D; cache?: LayerCache } {
  const { numHeads: nh, numKvHeads: nkv, headDim: hd } = config;
  const { batch: B, seqLen: T } = ctx;
  const g = nh / nkv;
  const run = ctx.loraRun;
  const q = applyRope(tf, linear(tf, x, w.q, lora.q, run?.('q')), nh, ctx.cosQ, ctx.sinQ, ctx.rotate);
  const k = applyRope(tf, linear(tf, x, w.k, lora.k, run?.('k')), nkv, ctx.cosK, ctx.sinK, ctx.rotate);
  const v = linear(tf, x, w.v, lora.v, run?.('v'));
  if (ctx.fused && !cache) {
    const dims: [number, number, number, number, number, number] = [B, T, T, nh, nkv, hd];
    const merged = ctx.segments ? fusedSegmentAttention(q, k, v, ctx.mask, dims) : fusedAttention(q, k, v, ctx.mask, dims);
    return { out: linear(tf, merged, w.o, lora.o, run?.('o')) };
  }
  let kt = tf.transpose(tf.reshape(k, [B, T, nkv, hd]), [0, 2, 1, 3]) as tfc.Tensor4D; // [B, nkv, T, hd]
  let vt = tf.transpose(tf.reshape(v, [B, T, nkv, hd]), [0, 2, 1, 3]) as tfc.Tensor4D;
  if (cache) {
    kt = tf.concat([cache.k, kt], 2);
    vt = tf.concat([cache.v, vt], 2);
  }
  const S = kt.shape[2];
  const qg = tf.reshape(tf.transpose(tf.reshape(q, [B, T, nh, hd]), [0, 2, 1, 3]), [B * nkv, g * T, hd]);
  const scores = tf.matMul(qg, tf.reshape(kt, [B * nkv, S, hd]), false, true); // [B*nkv, g*T, S]
  const probs = tf.softmax(tf.add(tf.reshape(scores, [B, nh, T, S]), ctx.mask));
  const ctxv = tf.matMul(tf.reshape(probs, [B * nkv, g * T, S]), tf.reshape(vt, [B * nkv, S, hd])); // [B*nkv, g*T, hd]
  const merged = tf.reshape(tf.transpose(tf.reshape(ctxv, [B, nh, T, hd]), [0, 2, 1, 3]), [B * T, nh * hd]) as tfc.Tensor2D;
  const out = linear(tf, merged, w.o, lora.o, run?.('o'));
  return { out, cache: { k: kt, v: vt } };
}
