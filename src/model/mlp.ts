/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)). */
import type * as tfc from '@tensorflow/tfjs-core';
import { linear, type Linear, type LoraPair, type LoraRun } from './lora.js';
import { releasingGrad } from './ops.js';

export interface MlpWeights {
  gate: Linear;
  up: Linear;
  down: Linear;
}

export interface MlpLora {
  gate?: LoraPair;
  up?: LoraPair;
  down?: LoraPair;
}

export function mlp(
  tf: typeof tfc,
  x: tfc.Tensor2D,
  w: MlpWeights,
  lora: MlpLora,
  loraRun?: (module: string) => LoraRun,
): tfc.Tensor2D {
  const gate = linear(tf, x, w.gate, lora.gate, loraRun?.('gate'));
  const up = linear(tf, x, w.up, lora.up, loraRun?.('up'));
  const act = swiglu(tf, gate, up);
  return linear(tf, act, w.down, lora.down, loraRun?.('down'));
}

/**
 * silu(gate) * up as one taped op saving gate and up only (the plain composition keeps five
 * [tokens, intermediate] tensors plus copies of them for the backward pass):
 * d/dgate = dy * up * s * (1 + gate * (1 - s)), d/dup = dy * gate * s, with s = sigmoid(gate).
 */
export function swiglu(tf: typeof tfc, gate: tfc.Tensor2D, up: tfc.Tensor2D): tfc.Tensor2D {
  const f = tf.customGrad(((g: tfc.Tensor, u: tfc.Tensor, save: tfc.GradSaveFunc) => {
    save([g, u]);
    return {
      value: tf.mul(tf.mul(g, tf.sigmoid(g)), u),
      gradFunc: releasingGrad(tf, (dy, [gs, us]) => {
        const sig = tf.sigmoid(gs);
        const silu = tf.mul(gs, sig);
        const dGate = tf.mul(tf.mul(dy, us), tf.mul(sig, tf.add(tf.sub(gs, silu), 1)));
        return [dGate, tf.mul(dy, silu)];
      }),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(gate, up) as tfc.Tensor2D;
}
