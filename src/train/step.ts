/**
 * One optimizer step: the gradients of every micro-batch accumulated (each loss divided by the
 * step's trained tokens, so each token weighs the same), clipped by global norm, then AdamW;
 * no update when the loss or the gradient norm is not finite.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CausalLM } from '../model/decoder.js';
import { clipGradNorm, type AdamW, type Param } from './adamw.js';
import { lossSum } from './bridge.js';
import type { PackedBatch } from './pack.js';
import type { Rng } from '../util/random.js';

export interface StepResult {
  /** Mean -log p per trained token over the micro-batches. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Trained tokens. */
  trainedTokens: number;
  /** False when the loss or the gradient norm was not finite: the update was not applied. */
  applied: boolean;
}

/**
 * Trains `active` on `micro`: dropout seeds drawn from `rng` (one per micro-batch), gradients
 * clipped to `maxGradNorm`, learning rates per parameter group from `lrs`.
 */
export async function optimizerStep(
  model: CausalLM,
  optimizer: AdamW,
  active: Param[],
  micro: PackedBatch[],
  rng: Rng,
  maxGradNorm: number,
  lrs: (group: string) => number,
): Promise<StepResult> {
  const total = micro.reduce((a, b) => a + b.trainedTokens, 0);
  const grads = new Map<string, tf.Tensor>();
  let lossTotal = 0;
  for (const batch of micro) {
    const seed = rng.nextSeed();
    const { value, grads: g } = tf.variableGrads(
      () => tf.div(lossSum(model, batch, { training: true, seed }), total) as tf.Scalar,
      active.map((p) => p.variable),
    );
    lossTotal += (await value.data())[0]!;
    value.dispose();
    for (const p of active) {
      const gi = g[p.variable.name];
      if (!gi) continue;
      const prev = grads.get(p.name);
      if (prev) {
        grads.set(p.name, tf.add(prev, gi));
        prev.dispose();
        gi.dispose();
      } else grads.set(p.name, gi);
    }
  }
  const gradNorm = await clipGradNorm(grads, maxGradNorm);
  // A NaN or infinite loss or gradient would poison every parameter and moment it touches.
  const applied = Number.isFinite(lossTotal) && Number.isFinite(gradNorm);
  if (applied) optimizer.step(grads, lrs);
  for (const g of grads.values()) g.dispose();
  return { loss: lossTotal, gradNorm, trainedTokens: total, applied };
}
