/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)), gate and up fused in one matmul. */
import type * as tfc from '@tensorflow/tfjs-core';
import { linear, loraDelta, type Linear, type LoraPair, type LoraRun } from './lora.js';

export interface MlpWeights {
  /** gate and up fused along the output axis: [hidden, 2 * intermediate]. */
  gateUp: Linear;
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
  const inter = w.gateUp.weightT.shape[1] / 2;
  let [gate, up] = tf.split(linear(tf, x, w.gateUp), [inter, inter], 1) as tfc.Tensor2D[];
  if (loraRun) {
    if (lora.gate) gate = tf.add(gate, loraDelta(tf, x, lora.gate, loraRun('gate')));
    if (lora.up) up = tf.add(up, loraDelta(tf, x, lora.up, loraRun('up')));
  }
  const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tfc.Tensor2D;
  return linear(tf, act, w.down, lora.down, loraRun?.('down'));
}
