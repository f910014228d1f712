/**
 * Shard bytes are checked as the loader reads them (src/shard/verify.ts): by block against the
 * block hashes the writer records in index.json, whole against the shard's sha256 for an entry
 * without them (an older index), on by default, off with `verify: false`.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoader } from '../../src/index.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { inspectDataset } from '../../src/shard/inspect.js';
import type { ShardEntry } from '../../src/shard/schema.js';
import { collect, LOCAL_ADVICE, makeDataset, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
let blocked: string;
// 5 rows per shard in blocks of 2 rows: 3 record batches / row groups (2, 2, 1 rows) per shard.
const spec = { shards: 3, rowsPerShard: 5, blockBytes: 1200, formats: ['arrow', 'parquet'] as ('arrow' | 'parquet')[] };

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('verify'));
  blocked = path.join(dir, 'blocked');
  await makeDataset(blocked, spec);
});
afterAll(() => cleanup());

/** A copy of the blocked dataset; `edit` may change a shard's bytes and the index. */
async function copyWith(name: string, edit: (dir: string) => Promise<void>): Promise<string> {
  const out = path.join(dir, name);
  await fs.cp(blocked, out, { recursive: true });
  await edit(out);
  return out;
}

async function entryOf(ds: string, file: string): Promise<ShardEntry> {
  return (await readShardIndex(ds)).shards.find((s) => s.file === file)!;
}

/** `block b of n (bytes a-z)` for the block holding byte `at`, from the entry's offsets. */
function blockAt(entry: ShardEntry, at: number): string {
  const offsets = entry.blockOffsets!;
  const b = offsets.findIndex((o, i) => i + 1 < offsets.length && o <= at && at < offsets[i + 1]!);
  expect(b).toBeGreaterThanOrEqual(0);
  return `block ${b + 1} of ${offsets.length - 1} (bytes ${offsets[b]}-${offsets[b + 1]! - 1})`;
}

async function flipByte(file: string, at: (size: number) => number): Promise<number> {
  const bytes = await fs.readFile(file);
  const pos = at(bytes.length);
  bytes[pos]! ^= 0xff;
  await fs.writeFile(file, bytes);
  return pos;
}

/** Replace the first occurrence of `from` in `file` by `to` (same length). */
async function replaceText(file: string, from: string, to: string): Promise<number> {
  expect(Buffer.byteLength(to)).toBe(Buffer.byteLength(from));
  const bytes = await fs.readFile(file);
  const pos = bytes.indexOf(Buffer.from(from));
  expect(pos).toBeGreaterThan(0);
  Buffer.from(to).copy(bytes, pos);
  await fs.writeFile(file, bytes);
  return pos;
}

const texts = (source: string, verify?: boolean) =>
  collect(
    createLoader<{ id: string; text: string }[]>({
      source,
      batchSize: 4,
      shuffle: false,
      workers: 0,
      verify,
      collate: (samples) => samples.map((s) => ({ id: s.sampleId, text: s.turns.map((t) => t.text).join(' | ') })),
    }),
  ).then((batches) => batches.flat());

describe('the writer records block hashes', () => {
  it('lists, for a shard of several blocks, where each block lies and the sha256 of its bytes and of the rest', async () => {
    const index = await readShardIndex(blocked);
    for (const entry of index.shards) {
      const bytes = await fs.readFile(path.join(blocked, entry.file));
      const offsets = entry.blockOffsets!;
      expect(offsets, entry.file).toHaveLength(entry.blockDialogues!.length + 1);
      const sha = (...parts: Buffer[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest('hex');
      expect(entry.blockSha256).toEqual(offsets.slice(0, -1).map((o, b) => sha(bytes.subarray(o, offsets[b + 1]))));
      expect(entry.headTailSha256).toBe(sha(bytes.subarray(0, offsets[0]), bytes.subarray(offsets[offsets.length - 1])));
    }
    // A shard of one block has only its whole-file sha256.
    const small = await makeDataset(path.join(dir, 'one-block'), { shards: 1, rowsPerShard: 2 });
    expect(Object.keys(small.shards[0]!).sort()).toEqual(['bytes', 'dialogues', 'file', 'format', 'rows', 'sha256']);
  });

  it('refuses an index whose block hashes do not fit its blocks, naming the field', async () => {
    const ds = await copyWith('bad-offsets', async (out) => {
      const file = path.join(out, 'index.json');
      const index = JSON.parse(await fs.readFile(file, 'utf8'));
      index.shards[1].blockOffsets = index.shards[1].blockOffsets.slice(1);
      await fs.writeFile(file, JSON.stringify(index));
    });
    await expect(readShardIndex(ds)).rejects.toThrow(`readShardIndex: ${path.join(ds, 'index.json')}: shards[1].blockOffsets: expected 4 offsets (one per block, then the end)`);
  });
});

describe('inspect --verify', () => {
  it('checks the block hashes of index.json against the file', async () => {
    const ds = await copyWith('bad-hash', async (out) => {
      const file = path.join(out, 'index.json');
      const index = JSON.parse(await fs.readFile(file, 'utf8'));
      index.shards[2].blockSha256[1] = '0'.repeat(64);
      await fs.writeFile(file, JSON.stringify(index));
    });
    const entry = (await readShardIndex(ds)).shards[2]!;
    const o = entry.blockOffsets!;
    const report = await inspectDataset(ds, { verify: true });
    expect(report.checks!.filter((c) => !c.ok)).toEqual([
      {
        file: entry.file,
        ok: false,
        problem: `block 2 of 3 (bytes ${o[1]}-${o[2]! - 1}): its sha256 in index.json differs from the file's, whose whole sha256 matches (index.json was changed): re-convert the shard`,
      },
    ]);
  });
});

describe('the loader checks what it reads', () => {
  for (const format of ['arrow', 'parquet'] as const) {
    it(`a flipped byte in a ${format} shard stops it, naming the shard, the block and its bytes`, async () => {
      const file = `shard-00001.${format}`;
      let at = 0;
      const ds = await copyWith(`flipped-${format}`, async (out) => {
        const entry = await entryOf(out, file);
        // The middle of the second block: feature values, which decode without complaint.
        at = await flipByte(path.join(out, file), () => Math.floor((entry.blockOffsets![1]! + entry.blockOffsets![2]!) / 2));
      });
      const where = blockAt(await entryOf(ds, file), at);
      expect(where).toMatch(/^block 2 of 3 /);
      // In a worker thread (Arrow) and on the calling thread (Parquet).
      const workers = format === 'arrow' ? 1 : 0;
      await expect(collect(createLoader({ source: ds, batchSize: 4, workers, format }))).rejects.toThrow(`loader: shard ${file}: ${where}: sha256 mismatch: ${LOCAL_ADVICE}`);
    });
  }

  it('altered dialogue text is caught; verify: false reads it as it is', async () => {
    const file = 'shard-00002.arrow';
    let at = 0;
    const ds = await copyWith('text', async (out) => {
      // 11 bytes of one turn's text (video 12 is the third row of shard 2).
      at = await replaceText(path.join(out, file), 'hello 12.0 ', 'bye-bye 9! ');
    });
    const where = blockAt(await entryOf(ds, file), at);
    await expect(texts(ds)).rejects.toThrow(`loader: shard ${file}: ${where}: sha256 mismatch: ${LOCAL_ADVICE}`);
    const unverified = await texts(ds, false);
    expect(unverified.find((s) => s.id === 'v00012/d0')!.text).toBe('bye-bye 9! 😀 | reply 12.0');
    expect(unverified.length).toBe((await texts(blocked)).length);
  });

  it('a damaged footer is named as the head and tail of the file', async () => {
    const file = 'shard-00000.arrow';
    let size = 0;
    const ds = await copyWith('footer', async (out) => {
      await flipByte(path.join(out, file), (n) => ((size = n), n - 40));
    });
    const offsets = (await entryOf(ds, file)).blockOffsets!;
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 0 }))).rejects.toThrow(
      `loader: shard ${file}: head and tail (bytes 0-${offsets[0]! - 1} and ${offsets[offsets.length - 1]}-${size - 1}): sha256 mismatch: ${LOCAL_ADVICE}`,
    );
  });

  it('an index without block hashes (written before them) still gets the whole-shard check', async () => {
    const file = 'shard-00001.arrow';
    let size = 0;
    const ds = await copyWith('old-index', async (out) => {
      const indexFile = path.join(out, 'index.json');
      const index = JSON.parse(await fs.readFile(indexFile, 'utf8'));
      for (const s of index.shards) {
        delete s.blockOffsets;
        delete s.blockSha256;
        delete s.headTailSha256;
      }
      await fs.writeFile(indexFile, JSON.stringify(index));
      await flipByte(path.join(out, file), (n) => ((size = n), n >> 1));
    });
    await expect(collect(createLoader({ source: ds, batchSize: 4, workers: 1 }))).rejects.toThrow(
      `loader: shard ${file}: whole file (bytes 0-${size - 1}): sha256 mismatch: ${LOCAL_ADVICE}`,
    );
    // Unchecked, the same files load (the damage is in feature values).
    expect((await collect(createLoader({ source: ds, batchSize: 4, workers: 0, verify: false }))).length).toBeGreaterThan(0);
  });
});
