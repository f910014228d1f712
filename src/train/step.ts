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
 * One rank's part of a data-parallel step (src/train/data-parallel.ts): the seeds of its
 * micro-batches, the step's trained tokens over every rank, and the reduction of the gradients
 * and loss across ranks (returns the step's loss).
 */
export interface StepShare {
  seeds: number[];
  totalTokens: number;
  reduce: (grads: Map<string, tf.Tensor>, lossTotal: number, ownTokens: number) => Promise<number>;
}

/**
 * Trains `active` on `micro`: dropout seeds drawn from `rng` (one per micro-batch), gradients
 * clipped to `maxGradNorm`, learning rates per parameter group from `lrs`. With `share`, `micro`
 * is this rank's part of the step and the gradients are summed across ranks before clipping.
 */
export async function optimizerStep(
  model: CausalLM,
  optimizer: AdamW,
  active: Param[],
  micro: PackedBatch[],
  rng: Rng,
  maxGradNorm: number,
  lrs: (group: string) => number,
  share?: StepShare,
): Promise<StepResult> {
  const own = micro.reduce((a, b) => a + b.trainedTokens, 0);
  const total = share?.totalTokens ?? own;
  const grads = new Map<string, tf.Tensor>();
  let lossTotal = 0;
  for (const [i, batch] of micro.entries()) {
    const seed = share ? share.seeds[i]! : rng.nextSeed();
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
  if (share) lossTotal = await share.reduce(grads, lossTotal, own);
  const gradNorm = await clipGradNorm(grads, maxGradNorm);
  // A NaN or infinite loss or gradient would poison every parameter and moment it touches.
  const applied = Number.isFinite(lossTotal) && Number.isFinite(gradNorm);
  if (applied) optimizer.step(grads, lrs);
  for (const g of grads.values()) g.dispose();
  return { loss: lossTotal, gradNorm, trainedTokens: total, applied };
}
