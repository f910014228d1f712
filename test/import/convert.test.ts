import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { ParsedItem, SourceRecord } from '../../src/convert/record.js';
import { convertExport } from '../../src/convert/convert.js';
import { chatharuhiFormat } from '../../src/convert/formats/chatharuhi.js';
import { mmroleFormat } from '../../src/convert/formats/mmrole.js';
import { rolebenchFormat } from '../../src/convert/formats/rolebench.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { readShard } from '../../src/shard/read.js';
import type { VideoRow } from '../../src/shard/schema.js';

// The importers through the real converter: records in, shards out, read back.
const repo = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.join(repo, 'test/import/fixtures');
const MMROLE_EVAL = path.join(repo, 'test/fixtures/mmrole');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-import-convert-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

async function rowsOf(dir: string): Promise<VideoRow[]> {
  const index = await readShardIndex(dir);
  const rows: VideoRow[] = [];
  for (const s of index.shards) rows.push(...(await readShard(path.join(dir, s.file), s.format)));
  return rows;
}

async function recordsOf(format: typeof mmroleFormat, input: string, options: object = {}): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  for await (const item of format.read(input, { root: input, ...options }) as AsyncGenerator<ParsedItem>) if (item.kind === 'record') out.push(item.record);
  return out;
}

describe('rpv convert with the importers', () => {
  it('MMRole-Data: auto-detected; each image becomes a one-frame video; skips are in the index with their lines', async () => {
    const out = path.join(tmp, 'mmrole');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'convert', path.join(FIXTURES, 'mmrole'), '--out', out, '--frame-size', '32', '--json'],
      { cwd: repo },
    );
    const summary = JSON.parse(stdout);
    expect(summary.inputFormat).toBe('mmrole');
    expect(summary.counts).toMatchObject({ read: 6, converted: 3, skipped: 3 });
    expect(summary.skippedByReason).toEqual({ 'missing image': 1, 'missing field': 1, 'empty turn': 1 });
    const index = await readShardIndex(out);
    expect(index.skipped.map((s) => [s.source, s.line])).toEqual([
      ['data/test/mmrole_sample.json', 4],
      ['data/test/mmrole_sample.json', 5],
      ['data/test/mmrole_sample.json', 6],
    ]);
    const rows = await rowsOf(out);
    const records = await recordsOf(mmroleFormat, path.join(FIXTURES, 'mmrole'));
    expect(rows.map((r) => r.video_id).sort()).toEqual(records.map((r) => r.id).sort());
    const perFrame = index.schema.featureDim * index.schema.tokensPerFrame;
    for (const row of rows) {
      const record = records.find((r) => r.id === row.video_id)!;
      expect(row.num_frames).toBe(1);
      expect(row.frame_times.length).toBe(1);
      expect(row.frames.length).toBe(perFrame);
      expect(row.frames.some((v) => v !== 0)).toBe(true);
      expect([row.role, row.profile, row.summary, row.language]).toEqual([record.role, record.profile, record.summary, record.language]);
      expect(row.dialogues).toEqual(record.dialogues.map((d) => ({ dialogue_id: d.id, turns: d.turns })));
    }
  });

  it('MMRole-Eval review files with --missing-media text-only: every sample kept, grouped by role and image', async () => {
    const input = path.join(MMROLE_EVAL, 'reviews/gpt-4-turbo');
    const out = path.join(tmp, 'mmrole-reviews');
    const summary = await convertExport({ input, out, inputFormat: 'mmrole', missingMedia: 'text-only', workers: 1 });
    const records = await recordsOf(mmroleFormat, input, { missingMedia: 'text-only' });
    const ids = new Set(records.map((r) => r.id));
    expect(summary.counts.read).toBe(216);
    expect(summary.counts.skipped).toBe(0);
    expect(summary.rows).toBe(ids.size);
    expect(summary.dialogues).toBe(216);
    const rows = await rowsOf(out);
    expect(rows.every((r) => r.num_frames === 0 && r.frames.length === 0)).toBe(true);
    expect(rows.reduce((n, r) => n + r.dialogues.length, 0)).toBe(216);
  });

  it.each([
    ['chatharuhi', chatharuhiFormat, { read: 9, converted: 4, skipped: 5 }],
    ['rolebench', rolebenchFormat, { read: 7, converted: 4, skipped: 3 }],
  ] as const)('%s: text-only rows, every field read back', async (name, format, counts) => {
    const input = path.join(FIXTURES, name);
    const out = path.join(tmp, name);
    const summary = await convertExport({ input, out, workers: 1 });
    expect(summary.inputFormat).toBe(name);
    expect(summary.counts).toMatchObject(counts);
    const rows = await rowsOf(out);
    const records = await recordsOf(format, input);
    expect(rows).toHaveLength(records.length);
    for (const record of records) {
      const row = rows.find((r) => r.video_id === record.id)!;
      expect([row.num_frames, row.duration_sec, row.frames.length]).toEqual([0, null, 0]);
      expect([row.role, row.profile, row.language, row.platform]).toEqual([record.role, record.profile, record.language, record.platform]);
      expect(row.dialogues).toEqual(record.dialogues.map((d) => ({ dialogue_id: d.id, turns: d.turns })));
    }
  });
});
