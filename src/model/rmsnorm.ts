/** RMSNorm as in Llama/Qwen2: `weight * x / sqrt(mean(x^2) + eps)` over the last axis, in float32. */
import type * as tfc from '@tensorflow/tfjs-core';

export function rmsNorm(tf: typeof tfc, x: tfc.Tensor, weight: tfc.Tensor1D, eps: number): tfc.Tensor {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight);
  });
}
