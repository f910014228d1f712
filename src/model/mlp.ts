/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)). */
import type * as tfc from '@tensorflow/tfjs-core';
import { linear, type Linear, type LoraPair, type LoraRun } from './lora.js';

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
  const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tfc.Tensor2D;
  return linear(tf, act, w.down, lora.down, loraRun?.('down'));
}
