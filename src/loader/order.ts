/**
 * The loader's sample order: a pure function of (seed, epoch, shard sizes, window, shuffle).
 * Nothing else (worker count, prefetch size, timing, rank) changes it. See README.md beside this
 * file for the algorithm and its guarantees.
 */
import { RpvError } from '../util/errors.js';
import { Rng } from './rng.js';

export interface OrderOptions {
  /** Any integer; the same seed gives the same order on every run. */
  seed: number;
  /** Epoch number; every epoch reshuffles shards and windows. */
  epoch: number;
  /** Samples (dialogues) in each shard, in index order. */
  shardSizes: readonly number[];
  /** Shards whose samples are shuffled together (the last window may be shorter). */
  windowShards: number;
  /** false: shards in index order, samples in shard order (windows change nothing). */
  shuffle: boolean;
}

/** The epoch's order: position i holds sample `local[i]` of shard `shard[i]`. */
export interface EpochOrder {
  /** Number of samples in the epoch (sum of shard sizes). */
  total: number;
  /** Shard (index into `shardSizes`) of each position. */
  shard: Uint32Array;
  /** Sample number inside its shard, row-major over (row, dialogue). */
  local: Uint32Array;
  /** Shards in the order they are visited. */
  shardOrder: Uint32Array;
  /** Start position of each window, plus `total` at the end. */
  windowStarts: number[];
}

export function epochOrder({ seed, epoch, shardSizes, windowShards, shuffle }: OrderOptions): EpochOrder {
  if (!Number.isInteger(windowShards) || windowShards < 1) {
    throw new RpvError(`loader: windowShards must be a positive integer, got ${windowShards}`);
  }
  const nShards = shardSizes.length;
  const shardOrder = new Uint32Array(nShards);
  for (let i = 0; i < nShards; i++) shardOrder[i] = i;
  if (shuffle) new Rng('rpv-shards', seed, epoch).shuffle(shardOrder);

  let total = 0;
  for (const size of shardSizes) total += size;
  const shard = new Uint32Array(total);
  const local = new Uint32Array(total);
  const windowStarts: number[] = [];
  let pos = 0;
  for (let w = 0; w * windowShards < nShards; w++) {
    const windowStart = pos;
    windowStarts.push(windowStart);
    for (let k = w * windowShards; k < Math.min(nShards, (w + 1) * windowShards); k++) {
      const s = shardOrder[k]!;
      const size = shardSizes[s]!;
      shard.fill(s, pos, pos + size);
      for (let j = 0; j < size; j++) local[pos + j] = j;
      pos += size;
    }
    if (shuffle) {
      // Joint Fisher–Yates over the window's positions, its own generator per window.
      const rng = new Rng('rpv-window', seed, epoch, w);
      for (let i = pos - 1; i > windowStart; i--) {
        const j = windowStart + rng.below(i - windowStart + 1);
        const ts = shard[i]!;
        shard[i] = shard[j]!;
        shard[j] = ts;
        const tl = local[i]!;
        local[i] = local[j]!;
        local[j] = tl;
      }
    }
  }
  windowStarts.push(total);
  return { total, shard, local, shardOrder, windowStarts };
}

export interface RankPlanOptions {
  /** Samples in the epoch. */
  total: number;
  batchSize: number;
  worldSize: number;
  rank: number;
  /** Drop the epoch's tail that does not fill a batch on every rank (no padding then). */
  dropLast: boolean;
}

/** Which positions of the (padded) epoch order a rank reads. */
export interface RankPlan {
  /** Batches every rank yields this epoch. */
  batches: number;
  /** First position of this rank's part (inclusive). */
  start: number;
  /** End of this rank's part (exclusive); positions >= total are padding. */
  end: number;
  /** Samples in the epoch before padding. */
  total: number;
}

/**
 * Contiguous rank parts of equal length: every rank yields `batches` batches. Without dropLast
 * the order is extended past its end by repeating it from position 0 (padding samples); with
 * dropLast the tail is dropped instead.
 */
export function planRank({ total, batchSize, worldSize, rank, dropLast }: RankPlanOptions): RankPlan {
  const perStep = batchSize * worldSize;
  const batches = dropLast ? Math.floor(total / perStep) : Math.ceil(total / perStep);
  const perRank = batches * batchSize;
  return { batches, start: rank * perRank, end: (rank + 1) * perRank, total };
}
