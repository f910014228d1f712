import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoader } from '../../src/index.js';
import { makeDataset, tempDir } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let dir: string;
let cleanup: () => void;
// 40 shards x 16 videos x 8 frames x 512 floats: 10.5 MB of features as float32.
const spec = { shards: 40, rowsPerShard: 16, tokensPerFrame: 1, featureDim: 512, frames: () => 8, dialogues: () => 3 };

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('memory'));
  await makeDataset(dir, spec);
});
afterAll(() => cleanup());

describe('bounded prefetch', () => {
  it('holds at most the bound plus one window over an epoch ten times the bound', async () => {
    const datasetBytes = 40 * 16 * 8 * 512 * 4;
    const prefetchBytes = Math.floor(datasetBytes / 10);
    const shardBytes = datasetBytes / 40;
    const loader = createLoader({ source: dir, batchSize: 8, seed: 1, workers: 2, prefetchBytes, windowShards: 2 });
    gc();
    const base = process.memoryUsage().arrayBuffers;
    let peakArrayBuffers = 0;
    let peakResident = 0;
    let batches = 0;
    for await (const batch of loader) {
      expect(batch.dims.frames).toBe(8);
      peakResident = Math.max(peakResident, loader.stats().residentBytes);
      if (++batches % 10 === 0) {
        gc();
        peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers - base);
      }
    }
    expect(batches).toBe((40 * 16 * 3) / 8);
    const stats = loader.stats();
    expect(stats.shardsLoaded).toBe(40);
    // Accounting: read-ahead stops at the bound; the window being consumed (2 shards) may add to it.
    expect(stats.peakResidentBytes).toBeLessThanOrEqual(prefetchBytes + 2.2 * shardBytes);
    expect(stats.peakResidentBytes).toBeGreaterThan(prefetchBytes / 2);
    expect(stats.residentBytes).toBe(0);
    // Measured: live ArrayBuffer memory after GC stays near the bound, far below the dataset.
    expect(peakArrayBuffers).toBeLessThan(prefetchBytes + 3 * shardBytes);
    gc();
    expect(process.memoryUsage().arrayBuffers - base).toBeLessThan(shardBytes);
  });
});

describe('bounded memory with shards larger than the bound', () => {
  // 4 shards x 128 videos x 8 frames x 512 float32 features: each shard 2 MiB decoded, a window
  // of 4 whole shards 8 MiB, against a bound of 1 MiB.
  const big = { shards: 4, rowsPerShard: 128, tokensPerFrame: 1, featureDim: 512, frames: () => 8, dialogues: () => 3 };
  const shardBytes = 128 * 8 * 512 * 4;
  const prefetchBytes = 1024 * 1024;
  let blocked: string;
  let whole: string;
  let done: () => void;

  beforeAll(async () => {
    const t = tempDir('memory-big');
    done = t.cleanup;
    blocked = path.join(t.dir, 'blocked');
    whole = path.join(t.dir, 'whole');
    const index = await makeDataset(blocked, { ...big, blockBytes: 64 * 1024 });
    expect(index.shards.every((s) => (s.blockDialogues?.length ?? 1) >= 40)).toBe(true);
    await makeDataset(whole, { ...big, blockBytes: 64 * 1024 * 1024 });
  });
  afterAll(() => done());

  it('holds at most prefetchBytes when shards are cut into blocks, its accounting says so', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => void (w.code === 'RPV_LOADER_BOUND' && warnings.push(w.message));
    process.on('warning', onWarning);
    try {
      // The accounting, not RSS (bench/loader.ts measures RSS): it counts every block held, decoded
      // or being read (then with its file bytes, which the worker holds meanwhile).
      const loader = createLoader({ source: blocked, batchSize: 8, seed: 3, workers: 2, prefetchBytes, windowShards: 4 });
      let batches = 0;
      for await (const batch of loader) {
        expect(batch.dims.frames).toBe(8);
        expect(loader.stats().residentBytes).toBeLessThanOrEqual(prefetchBytes);
        batches++;
      }
      expect(batches).toBe((4 * 128 * 3) / 8);
      const stats = loader.stats();
      expect(stats.boundBytes).toBe(prefetchBytes);
      expect(stats.peakResidentBytes).toBeLessThanOrEqual(prefetchBytes);
      expect(stats.peakResidentBytes).toBeGreaterThan(prefetchBytes / 2);
      expect(stats.shardsLoaded).toBe(4);
      expect(stats.blocksLoaded).toBeGreaterThanOrEqual(4 * 40);
      expect(stats.residentBytes).toBe(0);
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('reports a bound above prefetchBytes, and warns, when shards are single blocks', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => void (w.code === 'RPV_LOADER_BOUND' && warnings.push(w.message));
    process.on('warning', onWarning);
    try {
      const loader = createLoader({ source: whole, batchSize: 8, seed: 3, workers: 0, prefetchBytes, windowShards: 4 });
      let peak = 0;
      for await (const _ of loader) peak = Math.max(peak, loader.stats().residentBytes);
      const stats = loader.stats();
      // One window of 4 whole shards is needed by the first batch: the bound is at least that.
      expect(stats.boundBytes).toBeGreaterThanOrEqual(4 * shardBytes);
      expect(stats.peakResidentBytes).toBeLessThanOrEqual(stats.boundBytes * 1.05);
      expect(stats.peakResidentBytes).toBeGreaterThan(4 * shardBytes);
      await new Promise((r) => setImmediate(r));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        new RegExp(`^loader: ${whole.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: one batch needs \\d+ MiB held at once \\(4 blocks of windowShards=4 shards\\), above prefetchBytes 1 MiB; memory will reach that\\.`),
      );
    } finally {
      process.off('warning', onWarning);
    }
  });
});
