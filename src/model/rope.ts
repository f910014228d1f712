/**
 * Rotary position embedding in Hugging Face's rotate-half layout: the head dimension is two
 * halves [x1, x2] and rotation gives [x1 cos - x2 sin, x2 cos + x1 sin] with the frequencies
 * repeated over both halves (transformers' `rotate_half` / `apply_rotary_pos_emb`).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { ropeInvFreq, type DecoderConfig } from './config.js';
import { releasingGrad } from './ops.js';

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
 * rotate_half as a matrix: x R = [-x2, x1] for one head's [x1, x2]. Applied per head by a
 * [N * heads, hd] x [hd, hd] matmul (hd flops per element, fast on every backend, its gradient
 * another matmul): tfjs-wasm's Reverse and broadcasting multiplies are far slower.
 */
export function rotateHalfMatrix(headDim: number): Float32Array {
  const half = headDim / 2;
  const r = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    r[(j + half) * headDim + j] = -1; // out[j] = -x[j + half]
    r[j * headDim + j + half] = 1; // out[j + half] = x[j]
  }
  return r;
}

/**
 * Rotate `x` [N, heads * headDim] (rows = batch x positions, heads side by side, as the q/k
 * projections give them): x * cos + rotate_half(x) * sin, with `cos`, `sin` [N, heads * headDim]
 * tiled over heads (an attention scale may be folded into them) and `rotate` from
 * rotateHalfMatrix. Every multiply is same-shape.
 */
export function applyRope(tf: typeof tfc, x: tfc.Tensor2D, heads: number, cos: tfc.Tensor2D, sin: tfc.Tensor2D, rotate: tfc.Tensor2D): tfc.Tensor2D {
  const [n, width] = x.shape;
  const hd = width / heads;
  // Linear in x: y = x cos + (x R) sin, so dx = dy cos + ((dy sin) R^T): x itself is not needed by
  // the backward pass, only the tables (saved: they are intermediates of the pass).
  const rot = (t: tfc.Tensor, r: tfc.Tensor, transpose: boolean) =>
    tf.reshape(tf.matMul(tf.reshape(t, [n * heads, hd]), r as tfc.Tensor2D, false, transpose), [n, width]);
  const f = tf.customGrad(((input: tfc.Tensor2D, save: tfc.GradSaveFunc) => {
    save([cos, sin, rotate]);
    return {
      value: tf.add(tf.mul(input, cos), tf.mul(rot(input, rotate, false), sin)),
      gradFunc: releasingGrad(tf, (dy, [c, s, r]) => tf.add(tf.mul(dy, c), rot(tf.mul(dy, s), r, true))),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x) as tfc.Tensor2D;
}

/** Tables for applyRope: cos and sin of each row ([rows, headDim] from ropeTables) tiled over `heads`, times `scale`. */
export function tileRopeTables(cos: Float32Array, sin: Float32Array, headDim: number, heads: number, scale = 1): { cos: Float32Array; sin: Float32Array } {
  const rows = cos.length / headDim;
  const width = heads * headDim;
  const c = new Float32Array(rows * width);
  const s = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) {
      const o = r * width + h * headDim;
      for (let i = 0; i < headDim; i++) {
        c[o + i] = cos[r * headDim + i] * scale;
        s[o + i] = sin[r * headDim + i] * scale;
      }
    }
  }
  return { cos: c, sin: s };
}
