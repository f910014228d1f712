import { describe, expect, it } from 'vitest';
import { epochOrder, planRank } from '../../src/loader/index.js';

const sizes = [7, 3, 12, 5, 9, 1, 8, 4, 6, 10];
const total = sizes.reduce((a, b) => a + b, 0);

function keys(o: ReturnType<typeof epochOrder>): string[] {
  return Array.from(o.shard, (s, i) => `${s}:${o.local[i]}`);
}

describe('epochOrder', () => {
  it('visits every sample of every shard exactly once', () => {
    const o = epochOrder({ seed: 3, epoch: 0, shardSizes: sizes, windowShards: 4, shuffle: true });
    expect(o.total).toBe(total);
    const expected = sizes.flatMap((n, s) => Array.from({ length: n }, (_, j) => `${s}:${j}`));
    expect([...keys(o)].sort()).toEqual(expected.sort());
  });

  it('is a pure function of seed, epoch and shard sizes', () => {
    const a = epochOrder({ seed: 3, epoch: 1, shardSizes: sizes, windowShards: 4, shuffle: true });
    const b = epochOrder({ seed: 3, epoch: 1, shardSizes: [...sizes], windowShards: 4, shuffle: true });
    expect(keys(a)).toEqual(keys(b));
    const otherEpoch = epochOrder({ seed: 3, epoch: 2, shardSizes: sizes, windowShards: 4, shuffle: true });
    const otherSeed = epochOrder({ seed: 4, epoch: 1, shardSizes: sizes, windowShards: 4, shuffle: true });
    expect(keys(otherEpoch)).not.toEqual(keys(a));
    expect(keys(otherSeed)).not.toEqual(keys(a));
  });

  it('mixes samples only within windows of consecutive permuted shards', () => {
    const o = epochOrder({ seed: 9, epoch: 0, shardSizes: sizes, windowShards: 4, shuffle: true });
    expect(o.windowStarts.length).toBe(Math.ceil(sizes.length / 4) + 1);
    for (let w = 0; w + 1 < o.windowStarts.length; w++) {
      const windowShards = new Set(Array.from(o.shardOrder.subarray(w * 4, w * 4 + 4)));
      const seen = new Set(Array.from(o.shard.subarray(o.windowStarts[w]!, o.windowStarts[w + 1]!)));
      expect(seen).toEqual(windowShards);
    }
    // Shuffled inside a window: the first window does not hold its shards one after the other.
    const first = Array.from(o.shard.subarray(0, o.windowStarts[1]!));
    const runs = first.filter((s, i) => i > 0 && s !== first[i - 1]).length;
    expect(runs).toBeGreaterThan(4);
  });

  it('without shuffle reads shards in index order, samples in shard order', () => {
    const o = epochOrder({ seed: 9, epoch: 5, shardSizes: sizes, windowShards: 4, shuffle: false });
    expect(keys(o)).toEqual(sizes.flatMap((n, s) => Array.from({ length: n }, (_, j) => `${s}:${j}`)));
  });

  it('rejects a window of zero shards', () => {
    expect(() => epochOrder({ seed: 0, epoch: 0, shardSizes: sizes, windowShards: 0, shuffle: true })).toThrow(
      'loader: windowShards must be a positive integer, got 0',
    );
  });
});

describe('epochOrder with shards cut into blocks', () => {
  // Shard s has blocks[s] (samples per block): 1 to 4 blocks, some of them empty.
  const blocks = [[3, 4], [3], [5, 5, 2], [1, 4], [2, 2, 2, 3], [1], [4, 4], [4], [3, 3], [5, 0, 5]];
  const order = (seed: number, epoch: number, windowShards = 4, shuffle = true) =>
    epochOrder({ seed, epoch, shardSizes: sizes, blockSizes: blocks, windowShards, shuffle });
  const firstOf = (s: number, b: number) => blocks[s]!.slice(0, b).reduce((a, n) => a + n, 0);

  it('visits every sample once, each in the block that holds it', () => {
    const o = order(3, 0);
    expect([...keys(o)].sort()).toEqual(sizes.flatMap((n, s) => Array.from({ length: n }, (_, j) => `${s}:${j}`)).sort());
    for (let i = 0; i < o.total; i++) {
      const s = o.shard[i]!;
      const b = o.block[i]!;
      expect(o.local[i]).toBeGreaterThanOrEqual(firstOf(s, b));
      expect(o.local[i]).toBeLessThan(firstOf(s, b + 1));
    }
  });

  it('is a pure function of seed, epoch and block sizes', () => {
    expect(keys(order(3, 1))).toEqual(keys(epochOrder({ seed: 3, epoch: 1, shardSizes: [...sizes], blockSizes: blocks.map((b) => [...b]), windowShards: 4, shuffle: true })));
    expect(keys(order(3, 2))).not.toEqual(keys(order(3, 1)));
    expect(keys(order(4, 1))).not.toEqual(keys(order(3, 1)));
  });

  it('mixes one block of each shard of a group per window, so a window holds at most windowShards blocks', () => {
    const o = order(9, 0);
    // Groups of 4 permuted shards give windows as many as the group's largest block count.
    const groups = [0, 4, 8].map((g) => Array.from(o.shardOrder.subarray(g, g + 4)));
    const windows = groups.reduce((n, g) => n + Math.max(...g.map((s) => blocks[s]!.length)), 0);
    expect(o.windowStarts.length).toBe(windows + 1);
    let w = 0;
    const seen = new Set<string>();
    for (const group of groups) {
      const rounds = Math.max(...group.map((s) => blocks[s]!.length));
      for (let r = 0; r < rounds; r++, w++) {
        const held = new Set<string>();
        for (let i = o.windowStarts[w]!; i < o.windowStarts[w + 1]!; i++) held.add(`${o.shard[i]}:${o.block[i]}`);
        const shards = [...held].map((k) => Number(k.split(':')[0]));
        // At most one block per shard, only shards of this group, no block seen in another window.
        expect(new Set(shards).size).toBe(shards.length);
        for (const s of shards) expect(group).toContain(s);
        for (const k of held) expect(seen.has(k)).toBe(false);
        for (const k of held) seen.add(k);
        expect(held.size).toBeLessThanOrEqual(group.filter((s) => blocks[s]!.length > r).length);
      }
    }
    expect(seen.size).toBe(blocks.flat().filter((n) => n > 0).length);
    // Blocks are visited in a shuffled order: some shard's first window does not start at block 0.
    const firstBlock = new Map<number, number>();
    for (let i = 0; i < o.total; i++) if (!firstBlock.has(o.shard[i]!)) firstBlock.set(o.shard[i]!, o.block[i]!);
    expect([...firstBlock.values()].some((b) => b !== 0)).toBe(true);
  });

  it('gives the order of single-block shards when every shard is one block', () => {
    const single = epochOrder({ seed: 5, epoch: 2, shardSizes: sizes, blockSizes: sizes.map((n) => [n]), windowShards: 3, shuffle: true });
    expect(keys(single)).toEqual(keys(epochOrder({ seed: 5, epoch: 2, shardSizes: sizes, windowShards: 3, shuffle: true })));
  });

  it('without shuffle reads shards in index order, blocks and samples in order', () => {
    expect(keys(order(9, 5, 4, false))).toEqual(sizes.flatMap((n, s) => Array.from({ length: n }, (_, j) => `${s}:${j}`)));
  });

  it('rejects block sizes that do not add up to the shard size', () => {
    expect(() => epochOrder({ seed: 0, epoch: 0, shardSizes: [3, 4], blockSizes: [[1, 2], [2, 1]], windowShards: 2, shuffle: true })).toThrow(
      'loader: shard 1: its blocks hold 3 samples, its size is 4',
    );
  });
});

describe('planRank', () => {
  for (const [n, batchSize, worldSize, dropLast] of [
    [100, 8, 3, false],
    [100, 8, 3, true],
    [96, 8, 4, false],
    [5, 4, 4, false],
    [1, 2, 3, false],
  ] as const) {
    it(`splits ${n} samples into equal parts (batch ${batchSize}, ${worldSize} ranks, dropLast ${dropLast})`, () => {
      const plans = Array.from({ length: worldSize }, (_, rank) => planRank({ total: n, batchSize, worldSize, rank, dropLast }));
      for (const p of plans) expect(p.end - p.start).toBe(p.batches * batchSize);
      expect(new Set(plans.map((p) => p.batches)).size).toBe(1);
      for (let r = 1; r < worldSize; r++) expect(plans[r]!.start).toBe(plans[r - 1]!.end);
      const covered = plans[worldSize - 1]!.end;
      if (dropLast) {
        expect(covered).toBeLessThanOrEqual(n);
        expect(n - covered).toBeLessThan(batchSize * worldSize);
      } else {
        expect(covered).toBeGreaterThanOrEqual(n);
        expect(covered - n).toBeLessThan(batchSize * worldSize);
      }
    });
  }
});
