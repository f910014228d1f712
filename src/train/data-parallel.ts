/**
 * What the training loop does differently on more than one rank (src/train/distributed.ts joins
 * the job). Every rank reads the same global order (the loader at rank 0 of 1: the order a single
 * process reads) and gathers a whole step of `ranks x grad_accum_steps` micro-batches; rank r
 * trains the ones at positions r, r + ranks, ... of the step, with the dropout seeds a single
 * process would use for them, each loss divided by the step's trained tokens over all ranks. The
 * gradients (and the loss) are then summed across ranks once per optimizer step, so every rank
 * applies the same AdamW update, and the losses are those of one process with the same global
 * batch. The loader position in a checkpoint is therefore global: a run resumes on any number of
 * ranks with no sample repeated or skipped.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Param } from './adamw.js';
import { Collective } from './distributed.js';
import { RpvError } from '../util/errors.js';

/** Steps between parameter checksums compared across ranks (RPV_DIST_CHECK_EVERY; 0 never). */
export const DEFAULT_CHECK_EVERY = 10;

/** Rank `rank`'s share of a step's micro-batches (positions rank, rank + ranks, ...), with their seeds. */
export function rankShare<T>(all: T[], seeds: number[], rank: number, worldSize: number): { own: T[]; seeds: number[] } {
  const own: T[] = [];
  const ownSeeds: number[] = [];
  for (let k = rank; k < all.length; k += worldSize) {
    own.push(all[k]!);
    ownSeeds.push(seeds[k]!);
  }
  return { own, seeds: ownSeeds };
}

export class DataParallel {
  /** True when some rank asked to stop (a signal) by the last step's reduction. */
  stopRequested = false;
  /** Bytes this rank sent to the all-reduce in the last step (its input; a ring moves about 2x (n-1)/n of it each way). */
  lastReduceBytes = 0;
  /** Milliseconds spent in the last step's all-reduce. */
  lastReduceMs = 0;
  readonly checkEvery: number;

  constructor(readonly collective: Collective) {
    const raw = process.env.RPV_DIST_CHECK_EVERY;
    this.checkEvery = raw === undefined || raw === '' ? DEFAULT_CHECK_EVERY : Number(raw);
    if (!Number.isInteger(this.checkEvery) || this.checkEvery < 0) throw new RpvError(`train: RPV_DIST_CHECK_EVERY=${raw}: expected a non-negative integer (steps; 0 turns the check off)`);
  }

  get rank(): number {
    return this.collective.rank;
  }
  get worldSize(): number {
    return this.collective.worldSize;
  }

  /** This rank's share of a step's micro-batches, with its seeds (`rankShare`). */
  split<T>(all: T[], seeds: number[]): { own: T[]; seeds: number[] } {
    return rankShare(all, seeds, this.rank, this.worldSize);
  }

  /**
   * Sums every active parameter's gradient (zeros where this rank's micro-batches gave none) and
   * the loss across ranks, in place in `grads`; checks that the ranks' trained tokens add up to
   * the step's. Returns the step's loss.
   */
  async reduce(active: Param[], grads: Map<string, tf.Tensor>, lossTotal: number, ownTokens: number, stepTokens: number, stop: boolean, step: number): Promise<number> {
    const t0 = performance.now();
    let n = 0;
    for (const p of active) n += p.variable.size;
    const flat = new Float32Array(n);
    let at = 0;
    for (const p of active) {
      const g = grads.get(p.name);
      if (g) flat.set(await g.data<'float32'>(), at);
      at += p.variable.size;
    }
    await this.collective.allreduceSum(flat, `step ${step}: gradient all-reduce`);
    const scalars = new Float64Array([lossTotal, ownTokens, stop ? 1 : 0]);
    await this.collective.allreduceSum(scalars, `step ${step}: loss all-reduce`);
    if (scalars[1] !== stepTokens) throw new RpvError(`train: rank ${this.rank}: step ${step}: the ranks trained ${scalars[1]} tokens, the step has ${stepTokens}: the ranks read different data (same shards, recipe and seed on every rank?)`);
    at = 0;
    for (const p of active) {
      const values = flat.subarray(at, at + p.variable.size);
      at += p.variable.size;
      grads.get(p.name)?.dispose();
      grads.set(p.name, tf.tensor(values, p.variable.shape, 'float32'));
    }
    this.stopRequested = scalars[2]! > 0;
    this.lastReduceBytes = flat.byteLength + scalars.byteLength;
    this.lastReduceMs = performance.now() - t0;
    return scalars[0]!;
  }

  /**
   * Compares a checksum of every trained value across ranks (each rank's in its own slot of a
   * summed vector); a mismatch stops the job naming the ranks that differ from rank 0.
   */
  async checkParams(params: Param[], step: number): Promise<void> {
    let sum = 0;
    let weighted = 0;
    for (const p of params) {
      const v = await p.variable.data<'float32'>();
      for (let i = 0; i < v.length; i++) {
        sum += v[i]!;
        weighted += v[i]! * ((i % 7) + 1);
      }
    }
    const slots = new Float64Array(this.worldSize * 2);
    slots[this.rank * 2] = sum;
    slots[this.rank * 2 + 1] = weighted;
    await this.collective.allreduceSum(slots, `step ${step}: parameter checksum`);
    const differ: number[] = [];
    for (let r = 1; r < this.worldSize; r++) if (slots[r * 2] !== slots[0] || slots[r * 2 + 1] !== slots[1]) differ.push(r);
    if (differ.length > 0) {
      throw new RpvError(
        `train: step ${step}: the parameters of rank ${differ.join(', rank ')} differ from rank 0's (checksum ${differ.map((r) => slots[r * 2]).join(', ')} vs ${slots[0]}): the ranks no longer train the same model (same rpv build, backend and recipe on every rank?); job stopped`,
      );
    }
  }
}
