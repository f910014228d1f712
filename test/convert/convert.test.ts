import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DuckDBInstance } from '@duckdb/node-api';
import { convertExport } from '../../src/convert/convert.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { sampleFrameTimes } from '../../src/media/sampling.js';
import { cli, readAllRows, sampleExport, tempDir } from './fixtures.js';

interface NativeRecord {
  id: string;
  video: string;
  role: string;
  language: string;
  platform: string;
  profile: string;
  summary: string;
  dialogues: { id: string; turns: { speaker: string; text: string }[] }[];
}

let exportDir: string;
let out: string;
let records: NativeRecord[];

beforeAll(async () => {
  exportDir = await sampleExport(4);
  records = readFileSync(path.join(exportDir, 'annotations.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  out = tempDir();
  await convertExport({ input: exportDir, out, shardFormat: 'both', workers: 2, overwrite: true });
});

describe('convert the sample export', () => {
  it('round-trips every field of every record, from Arrow and from Parquet', async () => {
    const arrowRows = await readAllRows(out, 'arrow');
    const parquetRows = await readAllRows(out, 'parquet');
    expect(parquetRows).toEqual(arrowRows);
    expect(arrowRows.map((r) => r.video_id)).toEqual(records.map((r) => r.id));
    // Chinese and emoji are in the sample's dialogues and profiles.
    expect(records.some((r) => /[\u4e00-\u9fff]/.test(JSON.stringify(r)) && /\p{Extended_Pictographic}/u.test(JSON.stringify(r)))).toBe(true);
    arrowRows.forEach((row, i) => {
      const rec = records[i]!;
      expect({
        video_id: row.video_id,
        source: row.source,
        role: row.role,
        language: row.language,
        platform: row.platform,
        profile: row.profile,
        summary: row.summary,
        dialogues: row.dialogues,
      }).toEqual({
        video_id: rec.id,
        source: `annotations.jsonl:${i + 1}`,
        role: rec.role,
        language: rec.language,
        platform: rec.platform,
        profile: rec.profile,
        summary: rec.summary,
        dialogues: rec.dialogues.map((d) => ({ dialogue_id: d.id, turns: d.turns })),
      });
    });
  });

  it('samples frames by the rule for clips of several lengths', async () => {
    const index = await readShardIndex(out);
    const rows = await readAllRows(out);
    const durations = rows.map((r) => Math.round(r.duration_sec!));
    expect(durations.sort((a, b) => a - b)).toEqual([3, 15, 28, 40]);
    const perFrame = index.schema.tokensPerFrame * index.schema.featureDim;
    for (const row of rows) {
      const want = sampleFrameTimes(row.duration_sec!, { fps: 1, minFrames: 4, maxFrames: 16 });
      expect(row.num_frames).toBe(Math.min(16, Math.max(4, Math.round(row.duration_sec! * 1))));
      expect(Array.from(row.frame_times)).toEqual(want);
      expect(row.frames.length).toBe(row.num_frames * perFrame);
      expect(row.frames.every((v) => Number.isFinite(v))).toBe(true);
    }
    expect(rows.map((r) => r.num_frames).sort((a, b) => a - b)).toEqual([4, 15, 16, 16]);
  });

  it('writes an index whose counts, totals and shard entries agree with the shards', async () => {
    const index = await readShardIndex(out);
    const rows = await readAllRows(out);
    expect(index.counts).toEqual({ read: 4, converted: 4, skipped: 0, rows: 4, grouped: 0 });
    expect(index.totals.rows).toBe(4);
    expect(index.totals.dialogues).toBe(rows.reduce((n, r) => n + r.dialogues.length, 0));
    expect(index.totals.frames).toBe(rows.reduce((n, r) => n + r.num_frames, 0));
    expect(index.shards.map((s) => [s.file, s.format, s.rows])).toEqual([
      ['shard-00000.arrow', 'arrow', 4],
      ['shard-00000.parquet', 'parquet', 4],
    ]);
    for (const s of index.shards) expect(readFileSync(path.join(out, s.file)).length).toBe(s.bytes);
    expect(index.sampling).toEqual({ fps: 1, minFrames: 4, maxFrames: 16, frameSize: 224 });
    expect(index.schema.dtype).toBe('float16');
    expect(index.encoder.id).toMatch(/^grid-v1/);
  });

  it('DuckDB reads the Parquet shard: row count, a nested turn and feature values', async () => {
    const rows = await readAllRows(out);
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const file = path.join(out, 'shard-00000.parquet');
    const q = async (sql: string) => (await con.runAndReadAll(sql)).getRows();
    expect(await q(`SELECT count(*)::INTEGER FROM read_parquet('${file}')`)).toEqual([[4]]);
    const row = rows[1]!;
    const turn = row.dialogues[1]!.turns[1]!;
    expect(await q(`SELECT dialogues[2].turns[2].speaker, dialogues[2].turns[2].text FROM read_parquet('${file}') WHERE video_id = '${row.video_id}'`)).toEqual([
      [turn.speaker, turn.text],
    ]);
    const [[values]] = (await q(`SELECT frames FROM read_parquet('${file}') WHERE video_id = '${row.video_id}'`)) as [[{ items: number[] }]];
    expect(Float32Array.from(values.items.map(Number))).toEqual(row.frames);
    con.closeSync();
  });

  it('stores float32 features exactly with --dtype float32', async () => {
    const out32 = tempDir();
    await convertExport({ input: exportDir, out: out32, dtype: 'float32', maxFrames: 4, workers: 2 });
    const rows16 = await readAllRows(out);
    const rows32 = await readAllRows(out32);
    // Same first 4 frames? No: maxFrames 4 samples other times. Compare float16 rounding on the 3 s clip (4 frames either way).
    const short16 = rows16.find((r) => r.num_frames === 4)!;
    const short32 = rows32.find((r) => r.video_id === short16.video_id)!;
    expect(Array.from(short32.frame_times)).toEqual(Array.from(short16.frame_times));
    expect(short32.frames.length).toBe(short16.frames.length);
    let maxErr = 0;
    for (let i = 0; i < short32.frames.length; i++) maxErr = Math.max(maxErr, Math.abs(short32.frames[i]! - short16.frames[i]!) / Math.max(1, Math.abs(short32.frames[i]!)));
    expect(maxErr).toBeLessThan(1e-3); // float16 keeps ~3 decimal digits
    expect(rows32.every((r) => r.num_frames === 4)).toBe(true);
  });
});

describe('batched extraction', () => {
  it('gives byte-identical shards one video per ffmpeg process and 8 per process, over mixed containers and bad files', async () => {
    const { ffmpeg } = await import('../media/helpers.js');
    const { writeAnnotations } = await import('./fixtures.js');
    const { promises: fs } = await import('node:fs');
    const dir = tempDir();
    await fs.mkdir(path.join(dir, 'v'));
    const v = (name: string) => path.join(dir, 'v', name);
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=10:d=5', '-c:v', 'libx264', '-preset', 'ultrafast', v('a.mp4')]);
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=25:d=4', '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', v('b.ts')]);
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=10:d=3', '-c:v', 'libvpx', '-b:v', '200k', v('c.webm')]);
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=1:d=1', '-frames:v', '1', v('d.png')]);
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=30:d=7', '-c:v', 'libx264', '-preset', 'medium', '-bf', '3', v('e.mp4')]);
    await fs.writeFile(v('cut.mp4'), (await fs.readFile(v('e.mp4'))).subarray(0, 3000));
    const turns = [{ speaker: 'U', text: 'hi' }, { speaker: 'R', text: 'yo' }];
    const names = ['a.mp4', 'b.ts', 'c.webm', 'd.png', 'e.mp4', 'cut.mp4', 'missing.mp4', 'a.mp4'];
    await writeAnnotations(dir, names.map((name, i) => ({ id: `r${i === 7 ? 0 : i}`, video: `v/${name}`, role: 'R', dialogues: [{ turns }] })));
    const one = tempDir();
    const eight = tempDir();
    await convertExport({ input: dir, out: one, workers: 2, videosPerProcess: 1 });
    await convertExport({ input: dir, out: eight, workers: 2, videosPerProcess: 8 });
    const [a, b] = [await readShardIndex(one), await readShardIndex(eight)];
    expect(b.shards.map((s) => s.sha256)).toEqual(a.shards.map((s) => s.sha256));
    expect(b.totals.rows).toBe(5); // a.mp4 twice is one row; cut and missing skipped
    expect(b.skipped.map((s) => s.reason.split(':')[0])).toEqual(['video truncated', 'video missing']);
    expect((await readAllRows(eight)).map((r) => [r.video_id, r.num_frames])).toEqual((await readAllRows(one)).map((r) => [r.video_id, r.num_frames]));
  });

  it('takes --videos-per-process, and --batch as its old name', async () => {
    for (const flag of ['--videos-per-process', '--batch']) {
      const bad = await cli(['convert', exportDir, '--out', tempDir(), flag, '0']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('rpv: convert: --videos-per-process must be an integer >= 1; got 0');
    }
    await expect(convertExport({ input: exportDir, out: tempDir(), videosPerProcess: 1.5 })).rejects.toThrow('convert: --videos-per-process must be an integer >= 1; got 1.5');
  });
});
