/**
 * One path for a dataset's bytes (src/shard/source.ts): over a real HTTP server, training's scan of
 * the dataset, the loader's epoch and `inspect --verify` together download each shard once,
 * checked by sha256 and kept in the cache.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLoader, type Batch } from '../../src/index.js';
import { scanDataset } from '../../src/train/dataset.js';
import { inspectDataset } from '../../src/shard/inspect.js';
import { readShardBytes } from '../../src/shard/source.js';
import { DEFAULT_CACHE_LIMIT_BYTES, defaultCacheLimitBytes } from '../../src/shard/cache.js';
import { LOCAL_ADVICE, REMOTE_ADVICE } from '../loader/helpers.js';
import type { ShardIndex } from '../../src/shard/schema.js';
import { collect, makeDataset, tempDir } from '../loader/helpers.js';
import { serveFolder, type FolderServer } from './http-server.js';

let dir: string;
let cleanup: () => void;
let server: FolderServer;
let index: ShardIndex;
const retry = { attempts: 3, backoffMs: 5 };
const shardRequests = () => [...server.requests].filter(([name]) => /\.(arrow|parquet)$/.test(name)).sort();

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('source'));
  index = await makeDataset(path.join(dir, 'data'), { shards: 5, rowsPerShard: 4, featureDim: 16, formats: ['arrow', 'parquet'] });
  server = await serveFolder(path.join(dir, 'data'));
});
afterAll(async () => {
  await server.close();
  cleanup();
});
beforeEach(() => {
  server.requests.clear();
  server.bytesServed.clear();
  server.corrupt.clear();
});

describe('shard bytes from one source', () => {
  it('scanDataset, a loader epoch and inspect --verify download each remote shard once', async () => {
    const cacheDir = path.join(dir, 'cache-once');
    const url = `${server.base}/index.json`;
    const options = { heldoutFraction: 0.25, seed: 3 };
    const remote = await scanDataset(url, { ...options, cacheDir, retry });
    const local = await scanDataset(path.join(dir, 'data'), options);
    expect(remote.videos).toEqual(local.videos);
    expect(remote.dialogues).toEqual(local.dialogues);
    expect(remote.roleDialogues).toEqual(local.roleDialogues);
    expect(remote.roleProfiles).toEqual(local.roleProfiles);
    expect(remote.videos.train + remote.videos.heldout).toBe(20);

    const batches: Batch[] = await collect(createLoader({ source: url, batchSize: 4, seed: 3, workers: 2, cacheDir, retry }));
    expect(new Set(batches.flatMap((b) => b.sampleIds)).size).toBe(local.dialogues.train + local.dialogues.heldout);
    const report = await inspectDataset(url, { verify: true, cacheDir, retry });
    expect(report.checks!.map((c) => c.ok)).toEqual(Array(10).fill(true));

    // Arrow shards (what scan and loader read) once each, in full; Parquet ones only by inspect, once each.
    const arrow = index.shards.filter((s) => s.format === 'arrow');
    expect(shardRequests()).toEqual(index.shards.map((s) => [s.file, 1]).sort());
    for (const s of arrow) expect(server.bytesServed.get(s.file)).toBe(s.bytes);
    expect((await fs.readdir(cacheDir)).sort()).toEqual(index.shards.map((s) => `${s.sha256}.${s.format}`).sort());
  });

  it('scanDataset refuses a remote shard whose bytes differ from the index, caching nothing', async () => {
    const cacheDir = path.join(dir, 'cache-corrupt');
    const bad = index.shards.find((s) => s.format === 'arrow' && s.file.endsWith('00002.arrow'))!;
    server.corrupt.add(bad.file);
    await expect(scanDataset(`${server.base}/index.json`, { heldoutFraction: 0, seed: 1, cacheDir, retry })).rejects.toThrow(
      `train: shard ${server.base}/${bad.file}: failed after 3 attempts: GET ${server.base}/${bad.file}: whole file (bytes 0-${bad.bytes - 1}): sha256 mismatch: ${REMOTE_ADVICE}`,
    );
    expect(server.requests.get(bad.file)).toBe(3);
    expect((await fs.readdir(cacheDir)).filter((f) => f.startsWith(bad.sha256))).toEqual([]);
  });

  it('checks a local shard by size, and by sha256 unless verify is false', async () => {
    const copy = path.join(dir, 'local-copy');
    await fs.cp(path.join(dir, 'data'), copy, { recursive: true });
    const entry = index.shards.find((s) => s.file === 'shard-00001.arrow')!;
    const file = path.join(copy, entry.file);
    const bytes = await fs.readFile(file);
    expect(Buffer.from((await readShardBytes(copy, entry, { verify: true })).bytes).equals(bytes)).toBe(true);
    bytes[bytes.length >> 1]! ^= 0xff;
    await fs.writeFile(file, bytes);
    expect((await readShardBytes(path.join(copy, 'index.json'), entry, { verify: false })).downloaded).toBe(false);
    await expect(readShardBytes(copy, entry)).rejects.toThrow(`whole file (bytes 0-${entry.bytes - 1}): sha256 mismatch: ${LOCAL_ADVICE}`);
    await fs.writeFile(file, bytes.subarray(1));
    await expect(readShardBytes(copy, entry)).rejects.toThrow(`size ${entry.bytes - 1} bytes, the index says ${entry.bytes} (file changed or truncated)`);
    await fs.rm(file);
    await expect(readShardBytes(copy, entry)).rejects.toThrow(`file not found: ${file}`);
    await expect(scanDataset(copy, { heldoutFraction: 0, seed: 1 })).rejects.toThrow(
      `train: shard ${file}: file not found: ${file}`,
    );
  });

  it('takes the default cache limit from RPV_CACHE_LIMIT_BYTES, refusing a bad value', () => {
    const before = process.env.RPV_CACHE_LIMIT_BYTES;
    try {
      delete process.env.RPV_CACHE_LIMIT_BYTES;
      expect(defaultCacheLimitBytes()).toBe(DEFAULT_CACHE_LIMIT_BYTES);
      process.env.RPV_CACHE_LIMIT_BYTES = '123456';
      expect(defaultCacheLimitBytes()).toBe(123456);
      process.env.RPV_CACHE_LIMIT_BYTES = '1GiB';
      expect(() => defaultCacheLimitBytes()).toThrow('RPV_CACHE_LIMIT_BYTES: expected a whole number of bytes > 0, found "1GiB"');
    } finally {
      if (before === undefined) delete process.env.RPV_CACHE_LIMIT_BYTES;
      else process.env.RPV_CACHE_LIMIT_BYTES = before;
    }
  });
});
