import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLoader } from '../../src/index.js';
import { liveWorkerThreads } from '../../src/loader/pool.js';
import { collect, LOCAL_ADVICE, makeDataset, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
const spec = { shards: 6, rowsPerShard: 5 };

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('errors'));
  await makeDataset(path.join(dir, 'good'), spec);
});
afterAll(() => cleanup());

// Errors from background work must reach next(), never the process.
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeEach(() => {
  unhandled.length = 0;
  process.on('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  await new Promise((r) => setTimeout(r, 50));
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
  expect(liveWorkerThreads()).toBe(0);
});

/** A copy of the good dataset with shard `n` damaged by `damage`. */
async function damaged(name: string, n: number, damage: (file: string) => Promise<void>): Promise<{ dir: string; file: string }> {
  const out = path.join(dir, name);
  await fs.cp(path.join(dir, 'good'), out, { recursive: true });
  const file = path.join(out, `shard-0000${n}.arrow`);
  await damage(file);
  return { dir: out, file };
}

describe('worker errors reach next()', () => {
  it('names a missing shard file', async () => {
    const { dir: ds, file } = await damaged('missing', 3, (f) => fs.rm(f));
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 2 }))).rejects.toThrow(
      `loader: shard shard-00003.arrow: file not found: ${file}`,
    );
  });

  it('names a truncated shard', async () => {
    const { dir: ds } = await damaged('truncated', 2, async (f) => {
      const bytes = await fs.readFile(f);
      await fs.writeFile(f, bytes.subarray(0, bytes.length - 100));
    });
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 2 }))).rejects.toThrow(
      /^loader: shard shard-00002\.arrow: size \d+ bytes, the index says \d+ \(file changed or truncated\)$/,
    );
  });

  it('names a shard that is not an Arrow file (unverified: the structural checks)', async () => {
    const { dir: ds } = await damaged('corrupt', 4, async (f) => {
      const bytes = await fs.readFile(f);
      bytes.fill(0x55, 0, 64);
      await fs.writeFile(f, bytes);
    });
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 1, verify: false }))).rejects.toThrow(
      'loader: shard shard-00004.arrow: readShard: shard-00004.arrow: corrupt arrow shard: not an Arrow IPC file (missing ARROW1 magic at start or end)',
    );
  });

  it('detects a flipped byte by default, naming the whole file of a one-block shard', async () => {
    let size = 0;
    const { dir: ds } = await damaged('flipped', 1, async (f) => {
      const bytes = await fs.readFile(f);
      size = bytes.length;
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      await fs.writeFile(f, bytes);
    });
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 2 }))).rejects.toThrow(
      `loader: shard shard-00001.arrow: whole file (bytes 0-${size - 1}): sha256 mismatch: ${LOCAL_ADVICE}`,
    );
  });

  it('in-process decoding (workers 0) reports the same way', async () => {
    const { dir: ds, file } = await damaged('missing0', 5, (f) => fs.rm(f));
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 0 }))).rejects.toThrow(
      `loader: shard shard-00005.arrow: file not found: ${file}`,
    );
  });

  it('names a missing dataset', async () => {
    await expect(collect(createLoader({ source: path.join(dir, 'nope'), batchSize: 4 }))).rejects.toThrow(
      `readShardIndex: ${path.join(dir, 'nope', 'index.json')}: not found (is this a folder written by rpv convert?)`,
    );
  });
});

describe('worker errors in shards of several blocks reach next()', () => {
  // 5 rows per shard in blocks of 2 rows: 3 record batches (2, 2, 1 rows) per shard.
  let blocked: string;
  beforeAll(async () => {
    blocked = path.join(dir, 'blocked');
    const index = await makeDataset(blocked, { ...spec, blockBytes: 1200 });
    expect(index.shards.every((s) => s.blockRows === 2)).toBe(true);
  });
  async function damagedBlocks(name: string, n: number, damage: (file: string) => Promise<void>): Promise<{ dir: string; file: string }> {
    const out = path.join(dir, name);
    await fs.cp(blocked, out, { recursive: true });
    const file = path.join(out, `shard-0000${n}.arrow`);
    await damage(file);
    return { dir: out, file };
  }

  it('names a missing or truncated shard', async () => {
    const { dir: missing, file } = await damagedBlocks('b-missing', 3, (f) => fs.rm(f));
    await expect(collect(createLoader({ source: missing, batchSize: 4, workers: 2 }))).rejects.toThrow(`loader: shard shard-00003.arrow: file not found: ${file}`);
    const { dir: truncated } = await damagedBlocks('b-truncated', 2, async (f) => fs.truncate(f, (await fs.stat(f)).size - 100));
    await expect(collect(createLoader({ source: truncated, batchSize: 4, workers: 0 }))).rejects.toThrow(
      /^loader: shard shard-00002\.arrow: size \d+ bytes, the index says \d+ \(file changed or truncated\)$/,
    );
  });

  it('names the block of a shard that is not an Arrow file', async () => {
    const { dir: ds } = await damagedBlocks('b-corrupt', 4, async (f) => {
      const bytes = await fs.readFile(f);
      bytes.fill(0x55, 0, 64);
      await fs.writeFile(f, bytes);
    });
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 1, verify: false }))).rejects.toThrow(
      /^loader: shard shard-00004\.arrow: block [123] of 3: corrupt arrow shard: not an Arrow IPC file \(missing ARROW1 magic at start or end\)$/,
    );
  });

  it('names a shard whose record batches are not the blocks its index entry lists', async () => {
    const out = path.join(dir, 'b-mismatch');
    await fs.cp(blocked, out, { recursive: true });
    const indexFile = path.join(out, 'index.json');
    const index = JSON.parse(await fs.readFile(indexFile, 'utf8'));
    // Shard 0 as blocks of 1 row (its rows hold 1 + v % 4 dialogues): 5 blocks, the file has 3.
    // As an index written before block hashes (those of 3 blocks would not fit 5).
    const { blockOffsets: _o, blockSha256: _s, headTailSha256: _h, ...older } = index.shards[0];
    index.shards[0] = { ...older, blockRows: 1, blockDialogues: [1, 2, 3, 4, 1] };
    await fs.writeFile(indexFile, JSON.stringify(index));
    await expect(collect(createLoader({ source: out, batchSize: 4, workers: 0, shuffle: false }))).rejects.toThrow(
      'loader: shard shard-00000.arrow: holds 3 record batches, the index says 5 blocks',
    );
  });
});

describe('stopping', () => {
  it('break stops the workers and releases shard memory', async () => {
    const loader = createLoader({ source: path.join(dir, 'good'), batchSize: 2, workers: 2 });
    let n = 0;
    for await (const batch of loader) {
      expect(batch.dims.batch).toBe(2);
      expect(liveWorkerThreads()).toBe(2);
      if (++n === 3) break;
    }
    expect(loader.stats().residentBytes).toBe(0);
    expect(loader.state().batches).toBe(3);
    // The loader can be iterated again after a break: it continues from batch 3.
    const rest = await collect(loader);
    expect(rest[0]!.index).toBe(3);
    // After a full pass the workers stay for the next epoch (idle, not keeping the process up) until close().
    expect(liveWorkerThreads()).toBe(2);
    await loader.close();
  });

  it('refuses a second concurrent iteration of one loader', async () => {
    const loader = createLoader({ source: path.join(dir, 'good'), batchSize: 2, workers: 0 });
    const a = loader[Symbol.asyncIterator]();
    const b = loader[Symbol.asyncIterator]();
    expect((await a.next()).done).toBe(false);
    await expect(b.next()).rejects.toThrow('loader: already being iterated; finish or break the other loop first');
    expect((await a.next()).value.index).toBe(1);
    await a.return!();
  });

  it('return() on a waiting iterator ends it', async () => {
    const loader = createLoader({ source: path.join(dir, 'good'), batchSize: 2, workers: 1 });
    const it = loader[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    expect(await it.return!()).toEqual({ done: true, value: undefined });
    expect(loader.stats().residentBytes).toBe(0);
  });
});

describe('worker pool', () => {
  const task = { name: 'shard-x.arrow', format: 'arrow' as const, floatsPerFrame: 1, bytes: 0, sha256: '', file: '/nonexistent', verify: false };

  it('fails the running and queued tasks when a worker crashes, then refuses new ones', async () => {
    const { LoadPool } = await import('../../src/loader/pool.js');
    const crash = `require('node:worker_threads').parentPort.postMessage({ ready: true }); require('node:worker_threads').parentPort.on('message', () => { throw new Error('boom'); });`;
    const pool = new LoadPool(1, { target: crash, eval: true, kind: 'js' });
    const results = await Promise.allSettled([pool.run(task), pool.run({ ...task, name: 'shard-y.arrow' })]);
    expect(results.map((r) => (r as PromiseRejectedResult).reason.message)).toEqual([
      'shard-x.arrow: loader: worker thread failed: boom',
      'shard-y.arrow: loader: worker thread failed: boom',
    ]);
    await expect(pool.run(task)).rejects.toThrow('loader: worker thread failed: boom');
    await pool.close();
  });

  it('close() terminates, as a last resort, a worker that ignores the stop request', async () => {
    const { LoadPool } = await import('../../src/loader/pool.js');
    const deaf = `require('node:worker_threads').parentPort.postMessage({ ready: true }); require('node:worker_threads').parentPort.on('message', () => {});`;
    const pool = new LoadPool(1, { target: deaf, eval: true, kind: 'js' }, { stopTimeoutMs: 200 });
    const run = pool.run(task).catch((err: Error) => err.message);
    await pool.close();
    expect(await run).toBe('loader: closed');
    expect(liveWorkerThreads()).toBe(0);
    // close() is idempotent and every call waits for the same shutdown.
    await pool.close();
  });

  it('fails the task of a worker that exits', async () => {
    const { LoadPool } = await import('../../src/loader/pool.js');
    const exit = `require('node:worker_threads').parentPort.postMessage({ ready: true }); require('node:worker_threads').parentPort.on('message', () => process.exit(7));`;
    const pool = new LoadPool(1, { target: exit, eval: true, kind: 'js' });
    await expect(pool.run(task)).rejects.toThrow('shard-x.arrow: loader: worker thread failed: loader: worker thread exited with code 7');
    await pool.close();
  });
});
