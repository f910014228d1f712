/**
 * Rotary position embedding in Hugging Face's rotate-half layout: the head dimension is two
 * halves [x1, x2] and rotation gives [x1 cos - x2 sin, x2 cos + x1 sin] with the frequencies
 * repeated over both halves (transformers' `rotate_half` / `apply_rotary_pos_emb`).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { ropeInvFreq, type DecoderConfig } from './config.js';

/** cos and sin tables for the given positions, shape [rows, headDim], float32. */
export function ropeTables(
  config: Pick<DecoderConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>,
  positions: ArrayLike<number>,
): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(config);
  const half = inv.length;
  const dim = config.headDim;
  const cos = new Float32Array(positions.length * dim);
  const sin = new Float32Array(positions.length * dim);
  for (let r = 0; r < positions.length; r++) {
    const p = positions[r];
    for (let i = 0; i < half; i++) {
      // transformers computes the angle in float32: round the same way.
      const angle = Math.fround(Math.fround(inv[i]) * p);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[r * dim + i] = c;
      cos[r * dim + half + i] = c;
      sin[r * dim + i] = s;
      sin[r * dim + half + i] = s;
    }
  }
  return { cos, sin };
}

/**
 * Rotate `x` [B, T, heads, headDim] by tables `cos`, `sin` [B, T, 1, headDim] (or broadcastable).
 * `sinSigned` is sin with its first half negated, so rotate_half(x) * sin becomes
 * concat(x2, x1) * sinSigned: two slices and a concat instead of a negation pass.
 */
export function applyRope(tf: typeof tfc, x: tfc.Tensor4D, cos: tfc.Tensor, sinSigned: tfc.Tensor): tfc.Tensor4D {
  return tf.tidy(() => {
    const half = x.shape[3] / 2;
    const [x1, x2] = tf.split(x, [half, half], 3);
    const swapped = tf.concat([x2, x1], 3);
    return tf.add(tf.mul(x, cos), tf.mul(swapped, sinSigned)) as tfc.Tensor4D;
  });
}

/** sin with the first half of the last axis negated (see applyRope). */
export function signSin(sin: Float32Array, headDim: number): Float32Array {
  const out = sin.slice();
  const half = headDim / 2;
  for (let r = 0; r < out.length; r += headDim) for (let i = 0; i < half; i++) out[r + i] = -out[r + i];
  return out;
}
