import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { indexLocation, readShardIndex, writeShardIndex } from '../../src/shard/index-file.js';
import { SHARD_COLUMNS, type ShardIndex } from '../../src/shard/schema.js';

const index: ShardIndex = {
  format: 'rpv-shards',
  version: 1,
  created: '2026-11-26T00:00:00.000Z',
  schema: { featureDim: 8, tokensPerFrame: 1, dtype: 'float16', columns: SHARD_COLUMNS },
  sampling: { fps: 1, minFrames: 4, maxFrames: 16, frameSize: 224 },
  encoder: { id: 'grid-v1' },
  shards: [{ file: 'shard-00000.arrow', format: 'arrow', rows: 2, dialogues: 3, bytes: 100, sha256: 'a'.repeat(64) }],
  totals: { rows: 2, dialogues: 3, frames: 8, bytes: 100, shards: 1 },
  counts: { read: 2, converted: 2, skipped: 0 },
  skipped: [],
};

describe('index.json', () => {
  it('writes atomically and reads back from a folder, a file path and an http URL', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rpv-index-'));
    await writeShardIndex(dir, index);
    expect(readdirSync(dir)).toEqual(['index.json']); // no temp file left
    expect(await readShardIndex(dir)).toEqual(JSON.parse(JSON.stringify(index)));
    expect(await readShardIndex(path.join(dir, 'index.json'))).toEqual(await readShardIndex(dir));
    const server = createServer((req, res) => {
      if (req.url === '/data/index.json') res.end(JSON.stringify(index));
      else res.writeHead(404).end('no');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(indexLocation(`${base}/data`)).toBe(`${base}/data/index.json`);
      expect(await readShardIndex(`${base}/data/`)).toEqual(await readShardIndex(dir));
      await expect(readShardIndex(`${base}/other/index.json`)).rejects.toThrow(
        `readShardIndex: ${base}/other/index.json: failed after 1 attempt: GET ${base}/other/index.json: HTTP 404 Not Found`,
      );
    } finally {
      server.close();
    }
  });

  it('rejects what it cannot read, naming the field', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rpv-index-'));
    const file = path.join(dir, 'index.json');
    const cases: [unknown, string][] = [
      [{ ...index, format: 'mds' }, 'format: expected "rpv-shards", found "mds"'],
      [{ ...index, version: 2 }, 'version 2 is newer than this rpv reads (1); upgrade rpv'],
      [{ ...index, schema: { ...index.schema, dtype: 'bfloat16' } }, 'schema.dtype: expected "float16" or "float32", found "bfloat16"'],
      [{ ...index, shards: [{ ...index.shards[0], file: '../x.arrow' }] }, 'shards[0].file: "../x.arrow" must be relative to the index, without ..'],
      [{ ...index, shards: [{ ...index.shards[0], rows: -1 }] }, 'shards[0].rows: expected an integer >= 0, found -1'],
      [{ ...index, shards: [{ ...index.shards[0], sha256: 'xyz' }] }, 'shards[0].sha256: expected 64 hex digits'],
      [{ ...index, shards: [{ ...index.shards[0], blockRows: 0, blockDialogues: [3] }] }, 'shards[0].blockRows: expected an integer >= 1, found 0'],
      [{ ...index, shards: [{ ...index.shards[0], blockRows: 1, blockDialogues: [3] }] }, 'shards[0].blockDialogues: 1 blocks, but 2 rows in blocks of 1 make 2'],
      [{ ...index, shards: [{ ...index.shards[0], blockRows: 1, blockDialogues: [1, 1] }] }, 'shards[0].blockDialogues: add up to 2, the entry says 3 dialogues'],
      [{ ...index, shards: [{ ...index.shards[0], blockRows: 1 }] }, 'shards[0].blockDialogues: expected an array of integers >= 0'],
    ];
    for (const [value, message] of cases) {
      writeFileSync(file, JSON.stringify(value));
      await expect(readShardIndex(dir)).rejects.toThrow(`readShardIndex: ${file}: ${message}`);
    }
    writeFileSync(file, '{"format": ');
    await expect(readShardIndex(dir)).rejects.toThrow(`readShardIndex: ${file}: invalid JSON: `);
    await expect(readShardIndex(path.join(dir, 'nope'))).rejects.toThrow(
      `readShardIndex: ${path.join(dir, 'nope', 'index.json')}: not found (is this a folder written by rpv convert?)`,
    );
  });
});
