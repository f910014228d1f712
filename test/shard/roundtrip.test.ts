import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DuckDBInstance } from '@duckdb/node-api';
import { readShard } from '../../src/shard/read.js';
import { ShardWriter, encodeShard, writeShardFile } from '../../src/shard/write.js';
import { float16ToFloat32, float32ToFloat16 } from '../../src/util/float16.js';
import type { FeatureSchema, VideoRow } from '../../src/shard/schema.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'rpv-shard-'));

function makeRows(schema: FeatureSchema): VideoRow[] {
  const per = schema.tokensPerFrame * schema.featureDim;
  const feats = (n: number, seed: number) => Float32Array.from({ length: n * per }, (_, i) => Math.sin(seed * 7 + i) * 3);
  return [
    {
      video_id: 'v001',
      source: 'annotations.jsonl:1',
      role: '小红',
      language: 'zh',
      platform: 'douyin',
      profile: '一个热爱画画的女孩 🎨，说话温柔。',
      summary: 'A red circle moves left → right.',
      duration_sec: 12.5,
      num_frames: 3,
      frame_times: Float64Array.from([2.0833333333333335, 6.25, 10.416666666666666]),
      frames: feats(3, 1),
      dialogues: [
        {
          dialogue_id: 'd0',
          turns: [
            { speaker: 'user', text: '你在画什么？😀' },
            { speaker: '小红', text: '我在画一个红色的圆圈，它正在向右移动！🔴➡️' },
          ],
        },
        { dialogue_id: 'd1', turns: [{ speaker: '小红', text: 'x'.repeat(5000) }] },
      ],
    },
    {
      video_id: 'text-only',
      source: 'annotations.jsonl:2',
      role: 'Bob',
      language: null,
      platform: null,
      profile: null,
      summary: null,
      duration_sec: null,
      num_frames: 0,
      frame_times: new Float64Array(0),
      frames: new Float32Array(0),
      dialogues: [{ dialogue_id: 'only', turns: [{ speaker: 'Alice', text: 'Hi Bob 👋' }, { speaker: 'Bob', text: '' + 'Hello, "quoted" \\ text\nnew line' }] }],
    },
    {
      video_id: 'v003',
      source: 'other.jsonl:7',
      role: 'Bob',
      language: 'en',
      platform: null,
      profile: 'Bob is a builder.',
      summary: null,
      duration_sec: 3,
      num_frames: 4,
      frame_times: Float64Array.from([0.375, 1.125, 1.875, 2.625]),
      frames: feats(4, 2),
      dialogues: [],
    },
  ];
}

/** What the rows read back as: frames rounded through float16 when stored as float16. */
function expected(rows: VideoRow[], schema: FeatureSchema): VideoRow[] {
  return rows.map((r) => ({ ...r, frames: schema.dtype === 'float16' ? float16ToFloat32(float32ToFloat16(r.frames)) : r.frames }));
}

for (const dtype of ['float16', 'float32'] as const) {
  for (const format of ['arrow', 'parquet'] as const) {
    it(`round-trips every field (${format}, ${dtype})`, async () => {
      const schema: FeatureSchema = { featureDim: 5, tokensPerFrame: 2, dtype };
      const rows = makeRows(schema);
      const dir = tmp();
      const entry = await writeShardFile(rows, path.join(dir, `s.${format}`), { format, schema });
      expect(entry).toMatchObject({ file: `s.${format}`, format, rows: 3, dialogues: 3 });
      expect(entry.bytes).toBe(readFileSync(path.join(dir, `s.${format}`)).length);
      const back = await readShard(path.join(dir, `s.${format}`));
      expect(back).toEqual(expected(rows, schema));
      // From bytes too, with the format named.
      expect(await readShard(readFileSync(path.join(dir, `s.${format}`)), format)).toEqual(back);
    });
  }
}

describe('readShard errors', () => {
  it('names the file of a truncated shard', async () => {
    const schema: FeatureSchema = { featureDim: 5, tokensPerFrame: 2, dtype: 'float16' };
    const dir = tmp();
    for (const format of ['arrow', 'parquet'] as const) {
      const bytes = encodeShard(makeRows(schema), { format, schema });
      const file = path.join(dir, `bad.${format}`);
      writeFileSync(file, bytes.subarray(0, bytes.length - 100));
      await expect(readShard(file)).rejects.toThrow(`readShard: ${file}: corrupt ${format} shard: not ${format === 'arrow' ? 'an Arrow IPC' : 'a Parquet'} file`);
      // Damaged metadata (a buffer count) with intact magic: a clear error, never a hang.
      if (format === 'arrow') {
        const meta = Uint8Array.from(bytes);
        meta.fill(0x07, 92, 96);
        writeFileSync(file, meta);
        await expect(readShard(file)).rejects.toThrow(/^readShard: .*: corrupt arrow shard: record batch 0: \d+ nodes and \d+ buffers do not fit in \d+ bytes of metadata$/);
      }
      // Intact magic, damaged middle: the index's sha256 catches it before decoding.
      const damaged = Uint8Array.from(bytes);
      damaged.fill(0x07, 92, 96);
      writeFileSync(file, damaged);
      const want = createHash('sha256').update(bytes).digest('hex');
      const found = createHash('sha256').update(damaged).digest('hex');
      await expect(readShard(file, format, { sha256: want })).rejects.toThrow(
        `readShard: ${file}: sha256 mismatch: expected ${want}, file has ${found} (corrupt or replaced shard)`,
      );
    }
  });

  it('rejects rows whose frames do not match the schema', () => {
    const schema: FeatureSchema = { featureDim: 4, tokensPerFrame: 2, dtype: 'float16' };
    expect(() => encodeShard(makeRows({ ...schema, featureDim: 5 }), { format: 'arrow', schema })).toThrow(
      'shard: row v001: frames has 30 values, expected num_frames 3 x tokensPerFrame 2 x featureDim 4 = 24',
    );
  });
});

describe('ShardWriter', () => {
  it('rotates before a shard would pass maxShardBytes and numbers shards', async () => {
    const schema: FeatureSchema = { featureDim: 64, tokensPerFrame: 1, dtype: 'float32' };
    const rows: VideoRow[] = Array.from({ length: 10 }, (_, i) => ({
      ...makeRows(schema)[2]!,
      video_id: `v${i}`,
      frames: new Float32Array(4 * 64).fill(i),
    }));
    const dir = tmp();
    const seen: number[] = [];
    // Each row is ~1.1 KB of features: 3 rows fit in 4000 bytes, 4 do not.
    const writer = new ShardWriter({ dir, schema, formats: ['arrow', 'parquet'], maxShardBytes: 4000, firstShard: 7, onShard: (s) => void seen.push(s.index) });
    for (const row of rows) await writer.add(row);
    const shards = await writer.close();
    expect(shards.map((s) => s.videoIds.length)).toEqual([3, 3, 3, 1]);
    expect(seen).toEqual([7, 8, 9, 10]);
    expect(shards[0]!.entries.map((e) => e.file)).toEqual(['shard-00007.arrow', 'shard-00007.parquet']);
    const back = [];
    for (const s of shards) back.push(...(await readShard(path.join(dir, s.entries[1]!.file))));
    expect(back.map((r) => r.frames[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('DuckDB reads Parquet shards', () => {
  for (const dtype of ['float16', 'float32'] as const) {
    it(`row count, nested turn text and feature values (${dtype})`, async () => {
      const schema: FeatureSchema = { featureDim: 5, tokensPerFrame: 2, dtype };
      const rows = makeRows(schema);
      const dir = tmp();
      const file = path.join(dir, 'shard.parquet');
      await writeShardFile(rows, file, { format: 'parquet', schema });
      const db = await DuckDBInstance.create(':memory:');
      const con = await db.connect();
      const q = async (sql: string) => (await con.runAndReadAll(sql)).getRows();
      const src = `read_parquet('${file}')`;
      expect(await q(`SELECT count(*)::INTEGER FROM ${src}`)).toEqual([[3]]);
      expect(await q(`SELECT dialogues[1].turns[2].text, dialogues[1].turns[2].speaker FROM ${src} WHERE video_id = 'v001'`)).toEqual([
        ['我在画一个红色的圆圈，它正在向右移动！🔴➡️', '小红'],
      ]);
      const featureRows = await q(`SELECT video_id, len(frames), frames FROM ${src} ORDER BY video_id`);
      const want = expected(rows, schema);
      for (const [id, n, values] of featureRows) {
        const row = want.find((r) => r.video_id === id)!;
        expect(n).toBe(BigInt(row.frames.length));
        const got = (values as { items: number[] }).items.map(Number);
        expect(Float32Array.from(got)).toEqual(row.frames);
      }
      expect(await q(`SELECT language, duration_sec FROM ${src} WHERE video_id = 'text-only'`)).toEqual([[null, null]]);
      con.closeSync();
    });
  }
});
