/**
 * `mergeDatasets`: join datasets (typically the `--part i/N` outputs of one export) into one
 * folder with one index. The inputs must agree on what a row means: feature schema, sampling and
 * encoder. Video ids must be unique across inputs (read from each shard's `video_id` column, its
 * bytes checked against the input's index.json as they are read: source.ts `readShardRows`).
 * Shards are renumbered in input order and hard-linked when possible (else copied), each file
 * placed atomically; the index is written last.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { tempPathFor } from '../util/atomic.js';
import { SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION, type ShardEntry, type ShardIndex } from './schema.js';
import { INDEX_FILE_NAME, readShardIndex, writeShardIndex } from './index-file.js';
import { readShardRows } from './source.js';
import { shardFileName } from './write.js';

export interface MergeDatasetsOptions {
  /** Dataset folders to join, in order. */
  inputs: string[];
  /** Output folder (must not hold a dataset). */
  out: string;
  /** Copy files instead of hard-linking them. Default false. */
  copy?: boolean;
}

export interface MergeDatasetsSummary {
  out: string;
  index: ShardIndex;
  /** How each file was placed. */
  linked: number;
  copied: number;
}

export async function mergeDatasets(options: MergeDatasetsOptions): Promise<MergeDatasetsSummary> {
  if (options.inputs.length === 0) throw new RpvError('merge: name at least one dataset folder');
  const out = path.resolve(options.out);
  const indexes: { dir: string; index: ShardIndex }[] = [];
  for (const dir of options.inputs) indexes.push({ dir: path.resolve(dir), index: await readShardIndex(dir) });
  if (indexes.some((x) => x.dir === out)) throw new RpvError(`merge: --out ${out} is also an input`);

  // Same meaning of a row everywhere.
  // The first input that has shards sets the formats (an empty part has none).
  const first = indexes.find((x) => x.index.shards.length > 0) ?? indexes[0]!;
  for (const other of indexes.slice(1)) {
    const diffs: string[] = [];
    const cmp = (what: string, a: unknown, b: unknown) => {
      if (JSON.stringify(a) !== JSON.stringify(b)) diffs.push(`${what}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    };
    cmp('schema', first.index.schema, other.index.schema);
    cmp('sampling', first.index.sampling, other.index.sampling);
    cmp('encoder', first.index.encoder.id, other.index.encoder.id);
    if (first.index.shards.length > 0 && other.index.shards.length > 0) cmp('formats', formatsOf(first.index), formatsOf(other.index));
    if (diffs.length > 0) throw new RpvError(`merge: ${other.dir} does not match ${first.dir}: ${diffs.join('; ')}`);
  }

  // Unique video ids across inputs.
  const owner = new Map<string, string>();
  for (const { dir, index } of indexes) {
    const format = formatsOf(index)[0];
    for (const entry of index.shards.filter((s) => s.format === format)) {
      const file = path.join(dir, entry.file);
      const rows = await readShardRows(dir, entry, { who: 'merge', columns: ['video_id'] });
      for (const row of rows) {
        const where = `${file}`;
        const seen = owner.get(row.video_id);
        if (seen !== undefined) throw new RpvError(`merge: video id "${row.video_id}" is in both ${seen} and ${where}; datasets to merge must hold different videos`);
        owner.set(row.video_id, where);
      }
    }
  }

  // Output folder.
  const existing = await fs.readdir(out).catch(() => [] as string[]);
  if (existing.includes(INDEX_FILE_NAME) || existing.some((n) => /^shard-\d+\.(arrow|parquet)$/.test(n))) {
    throw new RpvError(`merge: ${out} already holds a dataset; choose an empty --out`);
  }
  await fs.mkdir(out, { recursive: true });

  const shards: ShardEntry[] = [];
  let next = 0;
  let linked = 0;
  let copied = 0;
  const mergedFrom: { dir: string; shards: number; rows: number; part?: unknown }[] = [];
  for (const { dir, index } of indexes) {
    // Row sets: entries that share a shard number (one per format) move together.
    const numbers = new Map<string, number>();
    for (const entry of index.shards) {
      const stem = entry.file.replace(/\.(arrow|parquet)$/, '');
      if (!numbers.has(stem)) numbers.set(stem, next++);
      const target = shardFileName(numbers.get(stem)!, entry.format);
      const how = await placeFile(path.join(dir, entry.file), path.join(out, target), options.copy === true);
      if (how === 'link') linked++;
      else copied++;
      shards.push({ ...entry, file: target });
    }
    mergedFrom.push({ dir, shards: index.shards.length, rows: index.totals.rows, ...(index.part ? { part: index.part } : {}) });
  }

  const sum = (f: (i: ShardIndex) => number) => indexes.reduce((n, x) => n + f(x.index), 0);
  const counts: ShardIndex['counts'] = { read: 0, converted: 0, skipped: 0 };
  for (const { index } of indexes) for (const [k, v] of Object.entries(index.counts)) counts[k] = (counts[k] ?? 0) + v;
  const index: ShardIndex = {
    format: SHARD_FORMAT_NAME,
    version: SHARD_FORMAT_VERSION,
    created: new Date().toISOString(),
    schema: first.index.schema,
    sampling: first.index.sampling,
    encoder: first.index.encoder,
    ...(first.index.input ? { input: first.index.input } : {}),
    merged_from: mergedFrom,
    shards,
    totals: {
      rows: sum((i) => i.totals.rows),
      dialogues: sum((i) => i.totals.dialogues),
      frames: sum((i) => i.totals.frames),
      bytes: shards.reduce((n, s) => n + s.bytes, 0),
      shards: shards.length,
    },
    counts,
    skipped: indexes.flatMap((x) => x.index.skipped),
  };
  await writeShardIndex(out, index);
  return { out, index, linked, copied };
}

function formatsOf(index: ShardIndex): string[] {
  return [...new Set(index.shards.map((s) => s.format))].sort();
}

/** Hard-link `from` to `to` (same filesystem), else copy it atomically. */
async function placeFile(from: string, to: string, copy: boolean): Promise<'link' | 'copy'> {
  const tmp = tempPathFor(to);
  if (!copy) {
    try {
      await fs.link(from, tmp);
      await fs.rename(tmp, to);
      return 'link';
    } catch {
      await fs.rm(tmp, { force: true });
    }
  }
  try {
    await fs.copyFile(from, tmp);
    await fs.rename(tmp, to);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw new RpvError(`merge: cannot copy ${from} to ${to}: ${(err as Error).message}`, { cause: err });
  }
  return 'copy';
}
