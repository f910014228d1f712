/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)). */
import type * as tfc from '@tensorflow/tfjs-core';
import { backwardOnly } from './frozen.js';
import { linear, type Linear, type LoraPair, type LoraRun } from './lora.js';
import { nativeSwiglu, nativeSwigluAvailable, nativeSwigluGrad } from '../native/swiglu.js';
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

/**
 * With `outputUnused` (a checkpointed layer's recomputation, which only needs the gradient tape)
 * the frozen down projection is not multiplied out: its value would be thrown away, and its
 * backward needs only the output gradient. That saves about a quarter of the recomputation.
 */
export function mlp(
  tf: typeof tfc,
  x: tfc.Tensor2D,
  w: MlpWeights,
  lora: MlpLora,
  loraRun?: (module: string) => LoraRun,
  options: { outputUnused?: boolean } = {},
): tfc.Tensor2D {
  const gate = linear(tf, x, w.gate, lora.gate, loraRun?.('gate'));
  const up = linear(tf, x, w.up, lora.up, loraRun?.('up'));
  const act = swiglu(tf, gate, up);
  const down = options.outputUnused ? backwardOnly(tf, w.down) : w.down;
  return linear(tf, act, down, lora.down, loraRun?.('down'));
}

/**
 * silu(gate) * up as one taped op saving gate and up only (the plain composition keeps five
 * [tokens, intermediate] tensors plus copies of them for the backward pass):
 * d/dgate = dy * up * s * (1 + gate * (1 - s)), d/dup = dy * gate * s, with s = sigmoid(gate).
 * On wasm with the addon, forward and backward are one native pass each (src/native/swiglu.ts).
 */
export function swiglu(tf: typeof tfc, gate: tfc.Tensor2D, up: tfc.Tensor2D): tfc.Tensor2D {
  const native = nativeSwigluAvailable();
  const f = tf.customGrad(((g: tfc.Tensor, u: tfc.Tensor, save: tfc.GradSaveFunc) => {
    save([g, u]);
    return {
      value: native ? nativeSwiglu(g, u) : tf.mul(tf.mul(g, tf.sigmoid(g)), u),
      gradFunc: releasingGrad(tf, (dy, [gs, us]) => {
        if (native) return nativeSwigluGrad(gs, us, dy);
        const sig = tf.sigmoid(gs);
        const silu = tf.mul(gs, sig);
        const dGate = tf.mul(tf.mul(dy, us), tf.mul(sig, tf.add(tf.sub(gs, silu), 1)));
        return [dGate, tf.mul(dy, silu)];
      }),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(gate, up) as tfc.Tensor2D;
}
