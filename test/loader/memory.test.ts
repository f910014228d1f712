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
