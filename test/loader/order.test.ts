import { describe, expect, it } from 'vitest';
import { epochOrder, planRank } from '../../src/index.js';

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
