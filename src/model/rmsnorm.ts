/**
 * RMSNorm as in Llama/Qwen2: `weight * x / sqrt(mean(x^2) + eps)` over the last axis, in float32.
 * A custom gradient (for x; the weight is frozen) so the tape records one op and saves one copy of
 * x instead of six ops and three copies: dx = r * g - x * r^3 * mean(g * x), with g = dy * weight,
 * r = rsqrt(mean(x^2) + eps).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { releasingGrad } from './ops.js';

export function rmsNorm(tf: typeof tfc, x: tfc.Tensor, weight: tfc.Tensor1D, eps: number): tfc.Tensor {
  const rsqrt = (t: tfc.Tensor) => tf.rsqrt(tf.add(tf.mean(tf.square(t), -1, true), eps));
  const f = tf.customGrad(((input: tfc.Tensor, save: tfc.GradSaveFunc) => {
    // Intermediates of tf.variableGrads' function are disposed before the backward pass: save x.
    save([input]);
    return {
      value: tf.mul(tf.mul(input, rsqrt(input)), weight),
      gradFunc: releasingGrad(tf, (dy, [saved]) => {
        const r = rsqrt(saved);
        const g = tf.mul(dy, weight);
        const m = tf.mean(tf.mul(g, saved), -1, true);
        return tf.sub(tf.mul(g, r), tf.mul(saved, tf.mul(tf.pow(r, 3), m)));
      }),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x);
}
