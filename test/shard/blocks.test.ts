import { mkdtempSync, openAsBlob, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { readShard } from '../../src/shard/read.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { DEFAULT_MAX_SHARD_BYTES, ShardWriter } from '../../src/shard/write.js';
import { DEFAULT_BLOCK_BYTES, blockRowsFor, shardBlocks } from '../../src/shard/blocks.js';
import { estimateRowBytes } from '../../src/shard/arrow-table.js';
import { makeRow } from '../loader/helpers.js';
import type { FeatureSchema } from '../../src/shard/schema.js';

const require = createRequire(import.meta.url);
const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'rpv-blocks-'));

describe('shard blocks', () => {
  it('cut a shard into record batches and row groups of at most blockBytes, listed in the entry', async () => {
    const schema: FeatureSchema = { featureDim: 16, tokensPerFrame: 2, dtype: 'float16' };
    const spec = { shards: 1, rowsPerShard: 25, featureDim: 16, tokensPerFrame: 2 };
    const rows = Array.from({ length: 25 }, (_, v) => makeRow(v, spec));
    const largest = Math.max(...rows.map((r) => estimateRowBytes(r, 'float16')));
    const blockBytes = 3 * largest + 1; // 3 rows per block: 9 blocks, the last of 1 row
    const dir = tmp();
    const writer = new ShardWriter({ dir, schema, formats: ['arrow', 'parquet'], blockBytes });
    for (const row of rows) await writer.add(row);
    const [shard] = await writer.close();
    const [arrow, parquet] = shard!.entries;
    const dialogues = [0, 3, 6, 9, 12, 15, 18, 21, 24].map((start) => rows.slice(start, start + 3).reduce((n, r) => n + r.dialogues.length, 0));
    for (const entry of [arrow!, parquet!]) {
      expect(entry.blockRows).toBe(3);
      expect(entry.blockDialogues).toEqual(dialogues);
      expect(shardBlocks(entry).rows).toEqual([3, 3, 3, 3, 3, 3, 3, 3, 1]);
    }
    const arrowTable = tableFromIPC(readFileSync(path.join(dir, arrow!.file)));
    expect(arrowTable.batches.map((b) => b.numRows)).toEqual([3, 3, 3, 3, 3, 3, 3, 3, 1]);
    const pw = require('parquet-wasm') as typeof import('parquet-wasm');
    const file = await pw.ParquetFile.fromFile(await openAsBlob(path.join(dir, parquet!.file)));
    expect(file.metadata().rowGroups().map((g) => g.numRows())).toEqual([3, 3, 3, 3, 3, 3, 3, 3, 1]);
    // Readers of the whole file see the rows in order: rpv's reader and DuckDB.
    for (const entry of [arrow!, parquet!]) expect((await readShard(path.join(dir, entry.file))).map((r) => r.video_id)).toEqual(rows.map((r) => r.video_id));
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const got = (await con.runAndReadAll(`SELECT video_id, len(dialogues)::INTEGER FROM read_parquet('${path.join(dir, parquet!.file)}')`)).getRows();
    expect(got).toEqual(rows.map((r) => [r.video_id, r.dialogues.length]));
  });

  it('even out the rows over the blocks a shard needs', () => {
    const schema: FeatureSchema = { featureDim: 16, tokensPerFrame: 2, dtype: 'float16' };
    const rows = Array.from({ length: 10 }, (_, v) => makeRow(v, { shards: 1, rowsPerShard: 10, featureDim: 16, tokensPerFrame: 2 }));
    const largest = Math.max(...rows.map((r) => estimateRowBytes(r, 'float16')));
    // Up to 6 rows per block: 2 blocks of 5, not 6 + 4; up to 4: 4 + 4 + 2 (3 blocks either way).
    expect(blockRowsFor(rows, schema, 6 * largest + 1)).toBe(5);
    expect(blockRowsFor(rows, schema, 4 * largest + 1)).toBe(4);
    expect(blockRowsFor(rows, schema, 100 * largest)).toBe(100);
    expect(blockRowsFor(rows, schema, 1)).toBe(1);
  });

  it('leave a shard that fits in one block as before: one record batch, no block fields', async () => {
    const schema: FeatureSchema = { featureDim: 4, tokensPerFrame: 2, dtype: 'float32' };
    const dir = tmp();
    const writer = new ShardWriter({ dir, schema, formats: ['arrow'] });
    for (let v = 0; v < 10; v++) await writer.add(makeRow(v, { shards: 1, rowsPerShard: 10 }));
    const [shard] = await writer.close();
    expect(shard!.entries[0]!.blockRows).toBeUndefined();
    expect(shard!.entries[0]!.blockDialogues).toBeUndefined();
    expect(tableFromIPC(readFileSync(path.join(dir, shard!.entries[0]!.file))).batches.length).toBe(1);
    expect(shardBlocks(shard!.entries[0]!)).toEqual({ count: 1, rows: [10], dialogues: [shard!.entries[0]!.dialogues], firstRow: [0, 10], firstDialogue: [0, shard!.entries[0]!.dialogues] });
  });

  it('defaults: 64 MiB shards of 16 MiB blocks', async () => {
    expect(DEFAULT_MAX_SHARD_BYTES).toBe(64 * 1024 * 1024);
    expect(DEFAULT_BLOCK_BYTES).toBe(16 * 1024 * 1024);
    // The index written by convert round-trips the block fields (validated on read).
    const dir = tmp();
    const { writeShardIndex } = await import('../../src/shard/index-file.js');
    const { SHARD_COLUMNS } = await import('../../src/shard/schema.js');
    const entry = { file: 's.arrow', format: 'arrow' as const, rows: 5, dialogues: 7, bytes: 10, sha256: 'b'.repeat(64), blockRows: 2, blockDialogues: [3, 2, 2] };
    await writeShardIndex(dir, {
      format: 'rpv-shards',
      version: 1,
      created: new Date(0).toISOString(),
      schema: { featureDim: 4, tokensPerFrame: 1, dtype: 'float32', columns: SHARD_COLUMNS },
      sampling: { fps: 1, minFrames: 1, maxFrames: 4, frameSize: 32 },
      encoder: { id: 'test' },
      shards: [entry],
      totals: { rows: 5, dialogues: 7, frames: 0, bytes: 10, shards: 1 },
      counts: { read: 5, converted: 5, skipped: 0 },
      skipped: [],
    });
    expect((await readShardIndex(dir)).shards[0]).toEqual(entry);
  });
});
