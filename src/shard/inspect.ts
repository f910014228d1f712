/**
 * `inspectDataset`: what a shard folder holds (index totals, schema, shards, one row), and with
 * `verify` a full check of every shard: size and sha256 against the index (a mismatch named by its
 * first bad block), the entry's block hashes against the file, then a complete decode whose row
 * and dialogue counts and feature lengths must match the index and schema.
 */
import { errorMessage } from '../util/errors.js';
import type { ShardEntry, ShardIndex, VideoRow } from './schema.js';
import { readShardIndex } from './index-file.js';
import { decodeShardRows } from './read.js';
import { readShardBytes, type ShardReadOptions } from './source.js';
import { blockHashesOf, firstBadPart } from './verify.js';

export interface ShardCheck {
  file: string;
  ok: boolean;
  /** Why the shard is bad (null when ok). */
  problem: string | null;
}

export interface InspectReport {
  dir: string;
  index: ShardIndex;
  /** The first row of the first shard (null for an empty dataset). */
  sampleRow: VideoRow | null;
  /** Per shard, when verifying. */
  checks: ShardCheck[] | null;
}

export interface InspectOptions {
  /** Check every shard: size and sha256 against the index, then a full decode. */
  verify?: boolean;
  /** Called with each shard's check as it is done. */
  onShard?: (check: ShardCheck) => void;
  /** Remote datasets: the shard cache and retries (../shard/source.ts). */
  cacheDir?: string;
  retry?: ShardReadOptions['retry'];
}

/** Bytes of a shard of the dataset at `dir` (a folder, index.json path or URL), checked by sha256. */
async function shardBytes(dir: string, entry: ShardEntry, options: InspectOptions): Promise<Uint8Array> {
  return (await readShardBytes(dir, entry, { cacheDir: options.cacheDir, retry: options.retry, verify: true })).bytes;
}

export async function inspectDataset(dir: string, options: InspectOptions = {}): Promise<InspectReport> {
  const index = await readShardIndex(dir, { retry: options.retry });
  let sampleRow: VideoRow | null = null;
  const first = index.shards[0];
  if (first && !options.verify) {
    try {
      const bytes = await shardBytes(dir, first, options);
      sampleRow = decodeShardRows(bytes, first.format, { name: first.file })[0] ?? null;
    } catch {
      sampleRow = null; // reported by --verify
    }
  }
  let checks: ShardCheck[] | null = null;
  if (options.verify) {
    checks = [];
    for (const entry of index.shards) {
      const check = await verifyShard(dir, entry, index, options, (rows) => {
        if (sampleRow === null && entry === first) sampleRow = rows[0] ?? null;
      });
      checks.push(check);
      options.onShard?.(check);
    }
  }
  return { dir, index, sampleRow, checks };
}

/** Size and sha256 (checked by the read), a full decode, counts against the index; `onRows` sees the rows of a good shard. */
async function verifyShard(dir: string, entry: ShardEntry, index: ShardIndex, options: InspectOptions, onRows: (rows: VideoRow[]) => void): Promise<ShardCheck> {
  const bad = (problem: string): ShardCheck => ({ file: entry.file, ok: false, problem });
  let rows: VideoRow[];
  let bytes: Uint8Array;
  try {
    bytes = await shardBytes(dir, entry, options);
    rows = decodeShardRows(bytes, entry.format, { name: entry.file });
  } catch (err) {
    return bad(errorMessage(err));
  }
  const hashes = blockHashesOf(entry);
  const part = hashes ? firstBadPart(bytes, hashes) : undefined;
  if (part) return bad(`${part}: its sha256 in index.json differs from the file's, whose whole sha256 matches (index.json was changed): re-convert the shard`);
  if (rows.length !== entry.rows) return bad(`${rows.length} rows, index says ${entry.rows}`);
  const dialogues = rows.reduce((n, r) => n + r.dialogues.length, 0);
  if (dialogues !== entry.dialogues) return bad(`${dialogues} dialogues, index says ${entry.dialogues}`);
  const per = index.schema.tokensPerFrame * index.schema.featureDim;
  for (const row of rows) {
    if (row.frames.length !== row.num_frames * per) return bad(`row ${row.video_id}: ${row.frames.length} feature values, expected ${row.num_frames} x ${per}`);
    if (row.frame_times.length !== row.num_frames) return bad(`row ${row.video_id}: ${row.frame_times.length} frame times, expected ${row.num_frames}`);
  }
  onRows(rows);
  return { file: entry.file, ok: true, problem: null };
}

/** A row as short display lines (long values truncated). */
export function renderRow(row: VideoRow, index: ShardIndex, maxText = 80): string[] {
  const cut = (s: string | null) => {
    if (s === null) return 'null';
    const flat = s.replace(/\s+/g, ' ');
    return flat.length > maxText ? `${JSON.stringify(flat.slice(0, maxText))}… (${s.length} chars)` : JSON.stringify(flat);
  };
  const per = index.schema.tokensPerFrame * index.schema.featureDim;
  const head = Array.from(row.frames.subarray(0, 6), (v) => v.toFixed(3)).join(', ');
  const lines = [
    `video_id      ${JSON.stringify(row.video_id)}`,
    `source        ${row.source}`,
    `role          ${JSON.stringify(row.role)}`,
    `language      ${row.language ?? 'null'}`,
    `platform      ${row.platform ?? 'null'}`,
    `profile       ${cut(row.profile)}`,
    `summary       ${cut(row.summary)}`,
    `duration_sec  ${row.duration_sec ?? 'null'}`,
    `num_frames    ${row.num_frames}`,
    `frame_times   [${Array.from(row.frame_times.subarray(0, 8), (t) => t.toFixed(2)).join(', ')}${row.frame_times.length > 8 ? ', …' : ''}]`,
    `frames        [${row.num_frames}, ${index.schema.tokensPerFrame}, ${index.schema.featureDim}] = ${row.frames.length} values${per ? `: ${head}${row.frames.length > 6 ? ', …' : ''}` : ''}`,
    `dialogues     ${row.dialogues.length}`,
  ];
  for (const d of row.dialogues.slice(0, 2)) {
    lines.push(`  ${d.dialogue_id}: ${d.turns.length} turn(s)`);
    for (const t of d.turns.slice(0, 3)) lines.push(`    ${t.speaker}${t.speaker === row.role ? ' (role)' : ''}: ${cut(t.text)}`);
    if (d.turns.length > 3) lines.push(`    … ${d.turns.length - 3} more`);
  }
  if (row.dialogues.length > 2) lines.push(`  … ${row.dialogues.length - 2} more dialogues`);
  return lines;
}
