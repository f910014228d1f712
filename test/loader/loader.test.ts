import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoader, type Batch, type LoaderState } from '../../src/index.js';
import { collect, featureValue, makeDataset, tempDir } from './helpers.js';

// 12 shards x 6 rows, 1-4 dialogues per video (180 samples), 0-4 frames per video; every test
// runs on shards of one block and on shards of 2-3 blocks (record batches / row groups).
const base = { shards: 12, rowsPerShard: 6, tokensPerFrame: 2, featureDim: 4, formats: ['arrow', 'parquet'] as ('arrow' | 'parquet')[] };

describe.each([
  { layout: 'shards of one block', blockBytes: undefined },
  { layout: 'shards of 2-3 blocks', blockBytes: 1200 },
])('$layout', ({ blockBytes }) => {
let dir: string;
let cleanup: () => void;
let total: number;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('main'));
  const index = await makeDataset(dir, { ...base, blockBytes });
  total = index.totals.dialogues;
  for (const entry of index.shards) expect(entry.blockDialogues?.length ?? 1).toSatisfy((n: number) => (blockBytes ? n >= 2 && n <= 3 : n === 1));
});
afterAll(() => cleanup());

const ids = (batches: Batch[]) => batches.flatMap((b) => b.sampleIds);

function checkBatch(b: Batch): void {
  const { batch, frames, tokensPerFrame, dim } = b.dims;
  expect(b.frames.length).toBe(batch * frames * tokensPerFrame * dim);
  b.dialogues.forEach((d, i) => {
    const v = Number(d.video_id.slice(1));
    expect(b.sampleIds[i]).toBe(`${d.video_id}/${d.dialogue_id}`);
    expect(d.numFrames).toBe(v % 5);
    expect(d.turns[0]!.text).toBe(`hello ${v}.${d.dialogue_id.slice(1)} 😀`);
    expect(d.role).toBe(v % 2 ? 'Lin' : 'Ada');
    for (let f = 0; f < frames; f++) {
      const real = f < d.numFrames;
      expect(b.frameMask[i * frames + f]).toBe(real ? 1 : 0);
      expect(b.frameTimes[i * frames + f]).toBe(real ? f * 1.5 + 0.75 : 0);
      const base = (i * frames + f) * tokensPerFrame * dim;
      expect(b.frames[base + 5]).toBe(real ? featureValue(v, f, 5) : 0);
    }
  });
}

describe('loader order', () => {
  it('yields every dialogue once, with its own features, in fixed-size batches', async () => {
    const batches = await collect(createLoader({ source: dir, batchSize: 8, seed: 7, workers: 1 }));
    expect(batches.every((b) => b.dims.batch === 8)).toBe(true);
    const real = batches.flatMap((b) => b.sampleIds.filter((_, i) => !b.padding[i]));
    expect(real.length).toBe(total);
    expect(new Set(real).size).toBe(total);
    expect(batches.length).toBe(Math.ceil(total / 8));
    const padded = batches.flatMap((b) => b.padding).filter(Boolean).length;
    expect(padded).toBe(batches.length * 8 - total);
    batches.forEach(checkBatch);
  });

  it('is the same on every run and for any number of workers', async () => {
    const runs = [];
    for (const workers of [0, 1, 3]) runs.push(ids(await collect(createLoader({ source: dir, batchSize: 5, seed: 11, workers }))));
    runs.push(ids(await collect(createLoader({ source: dir, batchSize: 5, seed: 11, workers: 2, prefetchBytes: 0 }))));
    runs.push(ids(await collect(createLoader({ source: dir, batchSize: 5, seed: 11, workers: 0 }))));
    for (const run of runs.slice(1)) expect(run).toEqual(runs[0]);
  });

  it('reshuffles every epoch and changes with the seed', async () => {
    const loader = createLoader({ source: dir, batchSize: 5, seed: 11, workers: 0 });
    const e0 = ids(await collect(loader));
    expect(loader.epoch).toBe(1);
    const e1 = ids(await collect(loader));
    expect(loader.epoch).toBe(2);
    expect(e1).not.toEqual(e0);
    expect([...e1].sort()).toEqual([...e0].sort());
    const again = ids(await collect(createLoader({ source: dir, batchSize: 5, seed: 11, epoch: 1, workers: 0 })));
    expect(again).toEqual(e1);
    const otherSeed = ids(await collect(createLoader({ source: dir, batchSize: 5, seed: 12, workers: 0 })));
    expect(otherSeed).not.toEqual(e0);
  });

  it('reads the Parquet shards into the same batches as the Arrow shards', async () => {
    const arrow = await collect(createLoader({ source: dir, batchSize: 6, seed: 2, workers: 0, format: 'arrow' }));
    const parquet = await collect(createLoader({ source: dir, batchSize: 6, seed: 2, workers: 2, format: 'parquet' }));
    expect(ids(parquet)).toEqual(ids(arrow));
    parquet.forEach((b, i) => {
      expect(b.frames).toEqual(arrow[i]!.frames);
      expect(b.dialogues).toEqual(arrow[i]!.dialogues);
    });
  });

  it('without shuffle yields shards in index order and samples in row order', async () => {
    const batches = await collect(createLoader({ source: dir, batchSize: 4, shuffle: false, workers: 0, dropLast: true }));
    const got = ids(batches);
    expect(got.slice(0, 4)).toEqual(['v00000/d0', 'v00001/d0', 'v00001/d1', 'v00002/d0']);
    expect(got.length).toBe(Math.floor(total / 4) * 4);
    expect(batches.flatMap((b) => b.padding).some(Boolean)).toBe(false);
  });
});

describe('loader resume', () => {
  // windowShards 1 makes "shards already consumed" observable: each window is one shard.
  for (const windowShards of [4, 1]) {
    it(`continues exactly where it stopped (windowShards ${windowShards})`, async () => {
      const opts = { source: dir, batchSize: 7, seed: 5, workers: 0, windowShards };
      const full = await collect(createLoader(opts));
      const expected = ids(full);
      const order = await createLoader(opts).epochOrder(0);
      // Stop points: mid-shard, exactly at a shard boundary, the last batch, the epoch's end.
      const boundary = order.windowStarts.findIndex((s) => s > 0 && s % 7 === 0);
      const stops = [3, boundary > 0 ? order.windowStarts[boundary]! / 7 : 9, full.length - 1, full.length];
      for (const stop of stops) {
        const first = createLoader(opts);
        const head = await collect(first, stop);
        const state: LoaderState = JSON.parse(JSON.stringify(first.state()));
        // Resume with workers too: the order does not depend on them.
        const resumed = createLoader({ ...opts, workers: stop === 3 ? 2 : 0, resume: state });
        const tail = await collect(resumed);
        if (stop === full.length) {
          // Epoch boundary: the state points at the start of the next epoch.
          expect(state.epoch).toBe(1);
          expect(state.batches).toBe(0);
          expect(ids(tail)).toEqual(ids(await collect(createLoader({ ...opts, epoch: 1 }))));
        } else {
          expect([...ids(head), ...ids(tail)]).toEqual(expected);
          expect(tail.map((b) => b.index)).toEqual(full.slice(stop).map((b) => b.index));
          // No shard wholly consumed before the stop is read again.
          const remaining = new Set(Array.from(order.shard.subarray(stop * 7)));
          expect(resumed.stats().shardsLoaded).toBe(remaining.size);
          // Nor any block: only those with samples still ahead are read.
          const ahead = Array.from(order.shard.subarray(stop * 7), (s, i) => `${s}:${order.block[stop * 7 + i]}`);
          expect(resumed.stats().blocksLoaded).toBe(new Set(ahead).size);
          if (windowShards === 1) expect(remaining.size).toBeLessThanOrEqual(12 - Math.floor((stop * 7) / 30));
        }
      }
    });
  }

  it('refuses a state from different order settings or another dataset', async () => {
    const loader = createLoader({ source: dir, batchSize: 7, seed: 5, workers: 0 });
    await collect(loader, 2);
    const state = loader.state();
    expect(() => createLoader({ source: dir, batchSize: 7, seed: 6, resume: state })).toThrow(
      'loader: resume state has seed=5 but the options say 6; the order would differ',
    );
    const bad = { ...state, dataset: '0000000000000000' };
    await expect(collect(createLoader({ source: dir, batchSize: 7, resume: bad }))).rejects.toThrow(
      /^loader: resume state was saved on another dataset \(fingerprint 0000000000000000/,
    );
  });
});

describe('loader ranks', () => {
  for (const dropLast of [false, true]) {
    it(`gives 3 ranks disjoint parts that cover the epoch with equal batch counts (dropLast ${dropLast})`, async () => {
      const parts = [];
      for (let rank = 0; rank < 3; rank++) {
        parts.push(await collect(createLoader({ source: dir, batchSize: 8, seed: 3, rank, worldSize: 3, dropLast, workers: rank === 1 ? 1 : 0 })));
      }
      expect(new Set(parts.map((p) => p.length)).size).toBe(1);
      const real = parts.flatMap((p) => p.flatMap((b) => b.sampleIds.filter((_, i) => !b.padding[i])));
      expect(new Set(real).size).toBe(real.length);
      const single = ids(await collect(createLoader({ source: dir, batchSize: 8, seed: 3, dropLast: false, workers: 0 })));
      if (dropLast) {
        expect(real.length).toBe(Math.floor(total / 24) * 24);
        expect(real).toEqual(single.slice(0, real.length));
      } else {
        expect(real.length).toBe(total);
        expect(new Set(real)).toEqual(new Set(single));
        const padding = parts.flatMap((p) => p.flatMap((b) => b.padding)).filter(Boolean).length;
        expect(padding).toBe(parts[0]!.length * 24 - total);
      }
    });
  }

  it('takes rank and world size from RANK and WORLD_SIZE', async () => {
    process.env.RANK = '1';
    process.env.WORLD_SIZE = '2';
    try {
      const loader = createLoader({ source: dir, batchSize: 8 });
      expect([loader.rank, loader.worldSize]).toEqual([1, 2]);
      process.env.RANK = 'x';
      expect(() => createLoader({ source: dir, batchSize: 8 })).toThrow('loader: $RANK must be a non-negative integer, found "x"');
    } finally {
      delete process.env.RANK;
      delete process.env.WORLD_SIZE;
    }
  });
});

describe('collate extension', () => {
  it('passes samples to a custom collate that can extend the default one', async () => {
    const { collate } = await import('../../src/index.js');
    const loader = createLoader({
      source: dir,
      batchSize: 4,
      workers: 0,
      collate: (samples, ctx) => ({ ...collate(samples, ctx), lengths: samples.map((s) => s.turns.length) }),
    });
    const [b] = await collect(loader, 1);
    expect(b!.lengths).toEqual([2, 2, 2, 2]);
    expect(b!.dims.batch).toBe(4);
  });
});

describe('float16 shards', () => {
  it('delivers the same float32 values as the converter reader decodes', async () => {
    const { readShard } = await import('../../src/shard/read.js');
    const { dir: f16, cleanup: done } = tempDir('f16');
    try {
      const index = await makeDataset(f16, { shards: 3, rowsPerShard: 5, dtype: 'float16', featureDim: 8, blockBytes });
      const expected = new Map<string, Float32Array>();
      for (const s of index.shards) {
        for (const row of await readShard(`${f16}/${s.file}`)) for (const d of row.dialogues) expected.set(`${row.video_id}/${d.dialogue_id}`, row.frames);
      }
      const batches = await collect(createLoader({ source: f16, batchSize: 4, seed: 1, workers: 1 }));
      let checked = 0;
      for (const b of batches) {
        const size = b.dims.frames * b.dims.tokensPerFrame * b.dims.dim;
        b.sampleIds.forEach((id, i) => {
          const want = expected.get(id)!;
          expect(b.frames.subarray(i * size, i * size + want.length)).toEqual(want);
          checked++;
        });
      }
      expect(checked).toBe(batches.length * 4);
      expect([...expected.values()].some((f) => f.some((x) => x !== Math.round(x)))).toBe(true);
    } finally {
      done();
    }
  });
});

describe('text-only datasets', () => {
  it('yields batches with zero frames and an empty mask', async () => {
    const { dir: textOnly, cleanup: done } = tempDir('text');
    try {
      await makeDataset(textOnly, { shards: 2, rowsPerShard: 3, frames: () => 0, blockBytes: blockBytes && 300 });
      const batches = await collect(createLoader({ source: textOnly, batchSize: 3, workers: 0 }));
      expect(batches.length).toBeGreaterThan(0);
      for (const b of batches) {
        expect(b.dims).toEqual({ batch: 3, frames: 0, tokensPerFrame: 2, dim: 4 });
        expect([b.frames.length, b.frameMask.length, b.frameTimes.length]).toEqual([0, 0, 0]);
        expect(b.dialogues.every((d) => d.numFrames === 0 && d.turns.length === 2)).toBe(true);
      }
    } finally {
      done();
    }
  });
});
});
