/**
 * The loader's sample order: a pure function of (seed, epoch, shard and block sizes, window,
 * shuffle).
 * Nothing else (worker count, prefetch size, timing, rank) changes it. See README.md beside this
 * file for the algorithm and its guarantees.
 */
import { RpvError } from '../util/errors.js';
import { Rng } from '../util/random.js';

export interface OrderOptions {
  /** Any integer; the same seed gives the same order on every run. */
  seed: number;
  /** Epoch number; every epoch reshuffles shards, blocks and windows. */
  epoch: number;
  /** Samples (dialogues) in each shard, in index order. */
  shardSizes: readonly number[];
  /**
   * Samples in each block of each shard (the index's `blockDialogues`); a shard without an entry
   * here, or without this option, is one block.
   */
  blockSizes?: readonly (readonly number[] | undefined)[];
  /** Shards read together: each shuffle window takes one block from each (the last group may be smaller). */
  windowShards: number;
  /** false: shards in index order, samples in shard order (windows change nothing). */
  shuffle: boolean;
}

/** The epoch's order: position i holds sample `local[i]` of shard `shard[i]`, in its block `block[i]`. */
export interface EpochOrder {
  /** Number of samples in the epoch (sum of shard sizes). */
  total: number;
  /** Shard (index into `shardSizes`) of each position. */
  shard: Uint32Array;
  /** Sample number inside its shard, row-major over (row, dialogue). */
  local: Uint32Array;
  /** Block (of its shard) of each position. */
  block: Uint32Array;
  /** Shards in the order they are visited. */
  shardOrder: Uint32Array;
  /** Start position of each window, plus `total` at the end. */
  windowStarts: number[];
}

export function epochOrder({ seed, epoch, shardSizes, blockSizes, windowShards, shuffle }: OrderOptions): EpochOrder {
  if (!Number.isInteger(windowShards) || windowShards < 1) {
    throw new RpvError(`loader: windowShards must be a positive integer, got ${windowShards}`);
  }
  const nShards = shardSizes.length;
  const blocksOf = (s: number): readonly number[] => blockSizes?.[s] ?? [shardSizes[s]!];
  const blockStart = (s: number): number[] => {
    const starts = [0];
    for (const n of blocksOf(s)) starts.push(starts[starts.length - 1]! + n);
    if (starts[starts.length - 1] !== shardSizes[s]) {
      throw new RpvError(`loader: shard ${s}: its blocks hold ${starts[starts.length - 1]} samples, its size is ${shardSizes[s]}`);
    }
    return starts;
  };
  const shardOrder = new Uint32Array(nShards);
  for (let i = 0; i < nShards; i++) shardOrder[i] = i;
  if (shuffle) Rng.fromKey('rpv-shards', seed, epoch).shuffle(shardOrder);

  let total = 0;
  for (const size of shardSizes) total += size;
  const shard = new Uint32Array(total);
  const local = new Uint32Array(total);
  const block = new Uint32Array(total);
  const windowStarts: number[] = [];
  let pos = 0;
  const place = (s: number, b: number, starts: number[]): void => {
    const size = starts[b + 1]! - starts[b]!;
    shard.fill(s, pos, pos + size);
    block.fill(b, pos, pos + size);
    for (let j = 0; j < size; j++) local[pos + j] = starts[b]! + j;
    pos += size;
  };
  if (!shuffle) {
    // Index order, row order: one window per block (nothing is mixed).
    for (let s = 0; s < nShards; s++) {
      const starts = blockStart(s);
      for (let b = 0; b + 1 < starts.length; b++) {
        windowStarts.push(pos);
        place(s, b, starts);
      }
    }
    windowStarts.push(total);
    return { total, shard, local, block, shardOrder, windowStarts };
  }
  let w = 0;
  for (let g = 0; g * windowShards < nShards; g++) {
    // A group of `windowShards` consecutive permuted shards; each shard's blocks in an order of
    // their own; window r of the group takes the r-th block of every shard that has one.
    const members = Array.from(shardOrder.subarray(g * windowShards, Math.min(nShards, (g + 1) * windowShards)));
    const starts = members.map(blockStart);
    const visits = starts.map((st, i) => {
      const order = new Uint32Array(st.length - 1);
      for (let b = 0; b < order.length; b++) order[b] = b;
      if (order.length > 1) Rng.fromKey('rpv-blocks', seed, epoch, members[i]!).shuffle(order);
      return order;
    });
    const rounds = Math.max(...visits.map((v) => v.length));
    for (let r = 0; r < rounds; r++, w++) {
      const windowStart = pos;
      windowStarts.push(windowStart);
      members.forEach((s, i) => {
        if (r < visits[i]!.length) place(s, visits[i]![r]!, starts[i]!);
      });
      // Joint Fisher–Yates over the window's positions, its own generator per window.
      const rng = Rng.fromKey('rpv-window', seed, epoch, w);
      for (let i = pos - 1; i > windowStart; i--) {
        const j = windowStart + rng.below(i - windowStart + 1);
        const ts = shard[i]!;
        shard[i] = shard[j]!;
        shard[j] = ts;
        const tl = local[i]!;
        local[i] = local[j]!;
        local[j] = tl;
        const tb = block[i]!;
        block[i] = block[j]!;
        block[j] = tb;
      }
    }
  }
  windowStarts.push(total);
  return { total, shard, local, block, shardOrder, windowStarts };
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
