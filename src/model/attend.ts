/**
 * The attention core shared by the decoder's shape of attention and the vision towers':
 * softmax(scale · q k^T [+ causal mask] [+ mask]) v per head, grouped-query heads allowed, with
 * `causal` and `scale` explicit (the decoder folds its scale into the rotary tables and passes
 * scale 1; an encoder passes head_dim^-0.5 and causal false). On wasm with the addon it is the
 * native fused kernel (src/native/attention.cc, its non-causal mode for encoders), elsewhere
 * tfjs ops; both differentiable in q, k and v.
 *
 * Layouts: q [B*T, nh*hd], k and v [B*S, nkv*hd]; out [B*T, nh*hd]. Query head h reads key/value
 * head h / (nh / nkv).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { fusedAttention, nativeAttentionAvailable } from '../native/attention.js';

export interface AttendShape {
  batch: number;
  queries: number;
  keys: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

export interface AttendOptions {
  /** Keys after a query's position (the last `queries` of `keys` being the new ones) are never read. */
  causal: boolean;
  /** Multiplies the scores (1/sqrt(headDim) for a plain transformer; 1 when folded into q). */
  scale: number;
  /** Additive mask [B, 1 | T, S] (0 allowed, -1e9 not); absent: every key (within the causal rule). */
  mask?: tfc.Tensor;
}

export function attend(tf: typeof tfc, q: tfc.Tensor2D, k: tfc.Tensor2D, v: tfc.Tensor2D, s: AttendShape, { causal, scale, mask }: AttendOptions): tfc.Tensor2D {
  const { batch: B, queries: T, keys: S, heads: nh, kvHeads: nkv, headDim: hd } = s;
  const qs = scale === 1 ? q : (tf.mul(q, scale) as tfc.Tensor2D);
  // The causal rule as an additive [1, 1, T, S] table (keys after past + i hidden).
  const causalTable = () => {
    const past = S - T;
    const allowed = new Float32Array(T * S);
    for (let i = 0; i < T; i++) for (let j = 0; j < S; j++) allowed[i * S + j] = j <= past + i ? 0 : -1e9;
    return tf.tensor(allowed, [1, 1, T, S]);
  };
  if (nativeAttentionAvailable()) {
    // The kernel reads a full [B, T, S] mask. In causal mode it skips the columns past a block of
    // rows' last query, but within a block the mask must hide the later keys: add the rule.
    let full: tfc.Tensor = mask ? tf.add(tf.zeros([B, 1, T, S]), tf.reshape(mask, [B, 1, -1, S])) : tf.zeros([B, 1, T, S]);
    if (causal) full = tf.add(full, causalTable());
    return fusedAttention(qs, k, v, tf.reshape(full, [B, T, S]), [B, T, S, nh, nkv, hd], causal);
  }
  const g = nh / nkv;
  const kt = tf.reshape(tf.transpose(tf.reshape(k, [B, S, nkv, hd]), [0, 2, 1, 3]), [B * nkv, S, hd]);
  const vt = tf.reshape(tf.transpose(tf.reshape(v, [B, S, nkv, hd]), [0, 2, 1, 3]), [B * nkv, S, hd]);
  const qg = tf.reshape(tf.transpose(tf.reshape(qs, [B, T, nh, hd]), [0, 2, 1, 3]), [B * nkv, g * T, hd]);
  let scores: tfc.Tensor = tf.reshape(tf.matMul(qg, kt, false, true), [B, nh, T, S]);
  if (causal) scores = tf.add(scores, causalTable());
  if (mask) scores = tf.add(scores, tf.reshape(mask, [B, 1, -1, S]));
  const probs = tf.softmax(scores);
  const ctx = tf.matMul(tf.reshape(probs, [B * nkv, g * T, S]), vt);
  return tf.reshape(tf.transpose(tf.reshape(ctx, [B, nh, T, hd]), [0, 2, 1, 3]), [B * T, nh * hd]) as tfc.Tensor2D;
}
