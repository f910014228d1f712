/**
 * GELU in the three forms checkpoints name (transformers' ACT2FN), each one taped op with its
 * gradient, saving only x:
 *   - `erf` (`gelu`): x * Φ(x) = 0.5 x (1 + erf(x / √2)); d = Φ(x) + x φ(x);
 *   - `tanh` (`gelu_pytorch_tanh`, `gelu_new`): 0.5 x (1 + tanh(u)), u = √(2/π) (x + 0.044715 x³);
 *     d = 0.5 (1 + t) + 0.5 x (1 - t²) √(2/π) (1 + 3 · 0.044715 x²);
 *   - `quick` (`quick_gelu`, CLIP): x σ(1.702 x); d = s + 1.702 x s (1 - s).
 * On wasm with the addon, forward and backward are one native pass each (src/native/encoder.ts).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { nativeEncoderAvailable, nativeGelu, nativeGeluGrad } from '../native/encoder.js';
import { releasingGrad } from './ops.js';

export type GeluKind = 'erf' | 'tanh' | 'quick';

/** transformers' `hidden_act` names -> GeluKind; other activations are refused by the caller. */
export const GELU_ACTS: Record<string, GeluKind> = {
  gelu: 'erf',
  gelu_pytorch_tanh: 'tanh',
  gelu_new: 'tanh',
  gelu_fast: 'tanh',
  quick_gelu: 'quick',
};

export function geluKind(hiddenAct: string, where: string): GeluKind {
  const kind = GELU_ACTS[hiddenAct];
  if (!kind) throw new RpvError(`${where}: hidden_act "${hiddenAct}" is not supported (expected one of ${Object.keys(GELU_ACTS).join(', ')})`);
  return kind;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

function forward(tf: typeof tfc, x: tfc.Tensor, kind: GeluKind): tfc.Tensor {
  if (kind === 'quick') return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
  if (kind === 'erf') return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, INV_SQRT_2)), 1));
  const u = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(u), 1));
}

function derivative(tf: typeof tfc, x: tfc.Tensor, kind: GeluKind): tfc.Tensor {
  if (kind === 'quick') {
    const s = tf.sigmoid(tf.mul(x, 1.702));
    return tf.add(s, tf.mul(tf.mul(x, 1.702), tf.mul(s, tf.sub(1, s))));
  }
  if (kind === 'erf') {
    const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, INV_SQRT_2)), 1), 0.5);
    const pdf = tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI);
    return tf.add(cdf, tf.mul(x, pdf));
  }
  const x2 = tf.square(x);
  const t = tf.tanh(tf.mul(tf.add(x, tf.mul(tf.mul(x2, x), 0.044715)), SQRT_2_OVER_PI));
  const du = tf.mul(tf.add(tf.mul(x2, 3 * 0.044715), 1), SQRT_2_OVER_PI);
  return tf.add(tf.mul(tf.add(t, 1), 0.5), tf.mul(tf.mul(tf.mul(x, 0.5), tf.sub(1, tf.square(t))), du));
}

export function gelu(tf: typeof tfc, x: tfc.Tensor, kind: GeluKind): tfc.Tensor {
  const native = nativeEncoderAvailable();
  const f = tf.customGrad(((input: tfc.Tensor, save: tfc.GradSaveFunc) => {
    save([input]);
    return {
      value: native ? nativeGelu(input, kind) : forward(tf, input, kind),
      gradFunc: releasingGrad(tf, (dy, [saved]) => (native ? nativeGeluGrad(saved, dy, kind) : tf.mul(dy, derivative(tf, saved, kind)))),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x);
}
