/**
 * LayerNorm with bias, beside RMSNorm (rmsnorm.ts): `(x - mean) / sqrt(var + eps) * weight + bias`
 * over the last axis (biased variance, as torch.nn.LayerNorm), in float32. Vision towers (CLIP,
 * SigLIP, InternViT) use it. A custom gradient for x (weight and bias are frozen) keeping one copy
 * of x: with xhat = (x - mean) r, r = rsqrt(var + eps), g = dy * weight,
 * dx = r * (g - mean(g) - xhat * mean(g * xhat)). On wasm with the addon, forward and backward
 * are one native pass each (src/native/encoder.ts).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { nativeEncoderAvailable, nativeLayerNorm, nativeLayerNormGrad } from '../native/encoder.js';
import { releasingGrad } from './ops.js';

export function layerNorm(tf: typeof tfc, x: tfc.Tensor, weight: tfc.Tensor1D, bias: tfc.Tensor1D | undefined, eps: number): tfc.Tensor {
  const normalise = (t: tfc.Tensor) => {
    const centred = tf.sub(t, tf.mean(t, -1, true));
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), eps));
    return { xhat: tf.mul(centred, r), r };
  };
  const native = nativeEncoderAvailable();
  const f = tf.customGrad(((input: tfc.Tensor, save: tfc.GradSaveFunc) => {
    save([input]);
    if (native) {
      return {
        value: nativeLayerNorm(input, weight, bias, eps),
        gradFunc: releasingGrad(tf, (dy, [saved]) => nativeLayerNormGrad(saved, weight, dy, eps)),
      };
    }
    const y = tf.mul(normalise(input).xhat, weight);
    return {
      value: bias ? tf.add(y, bias) : y,
      gradFunc: releasingGrad(tf, (dy, [saved]) => {
        const { xhat, r } = normalise(saved);
        const g = tf.mul(dy, weight);
        const inner = tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(xhat, tf.mean(tf.mul(g, xhat), -1, true)));
        return tf.mul(inner, r);
      }),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x);
}
