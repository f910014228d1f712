/**
 * `inspectDataset`: what a shard folder holds (index totals, schema, shards, one row), and with
 * `verify` a full check of every shard: size and sha256 against the index, then a complete decode
 * whose row and dialogue counts and feature lengths must match the index and schema.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../util/errors.js';
import type { ShardEntry, ShardIndex, VideoRow } from '../shard/schema.js';
import { indexLocation, isUrl, readShardIndex } from '../shard/index-file.js';
import { decodeShard } from '../shard/read.js';

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

/** Bytes of a shard next to the index: a local file, or fetched when the index is a URL. */
async function shardBytes(dir: string, file: string): Promise<Uint8Array> {
  if (!isUrl(dir)) return fs.readFile(path.join(dir.endsWith('.json') ? path.dirname(dir) : dir, file));
  const url = new URL(file, indexLocation(dir)).toString();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

export async function inspectDataset(dir: string, options: { verify?: boolean; onShard?: (check: ShardCheck) => void } = {}): Promise<InspectReport> {
  const index = await readShardIndex(dir);
  let sampleRow: VideoRow | null = null;
  const first = index.shards[0];
  if (first && !options.verify) {
    try {
      const bytes = await shardBytes(dir, first.file);
      sampleRow = decodeShard(bytes, first.format, { name: first.file, sha256: first.sha256 })[0] ?? null;
    } catch {
      sampleRow = null; // reported by --verify
    }
  }
  let checks: ShardCheck[] | null = null;
  if (options.verify) {
    checks = [];
    for (const entry of index.shards) {
      const check = await verifyShard(dir, entry, index);
      if (check.ok && sampleRow === null && check.file === first?.file) {
        sampleRow = decodeShard(await shardBytes(dir, entry.file), entry.format, { name: entry.file })[0] ?? null;
      }
      checks.push(check);
      options.onShard?.(check);
    }
  }
  return { dir, index, sampleRow, checks };
}

async function verifyShard(dir: string, entry: ShardEntry, index: ShardIndex): Promise<ShardCheck> {
  const bad = (problem: string): ShardCheck => ({ file: entry.file, ok: false, problem });
  let bytes: Uint8Array;
  try {
    bytes = await shardBytes(dir, entry.file);
  } catch (err) {
    return bad((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : errorMessage(err));
  }
  if (bytes.length !== entry.bytes) return bad(`${bytes.length} bytes, index says ${entry.bytes}`);
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== entry.sha256) return bad(`sha256 ${sha} differs from the index's ${entry.sha256}`);
  let rows: VideoRow[];
  try {
    rows = decodeShard(bytes, entry.format, { name: entry.file });
  } catch (err) {
    return bad(errorMessage(err));
  }
  if (rows.length !== entry.rows) return bad(`${rows.length} rows, index says ${entry.rows}`);
  const dialogues = rows.reduce((n, r) => n + r.dialogues.length, 0);
  if (dialogues !== entry.dialogues) return bad(`${dialogues} dialogues, index says ${entry.dialogues}`);
  const per = index.schema.tokensPerFrame * index.schema.featureDim;
  for (const row of rows) {
    if (row.frames.length !== row.num_frames * per) return bad(`row ${row.video_id}: ${row.frames.length} feature values, expected ${row.num_frames} x ${per}`);
    if (row.frame_times.length !== row.num_frames) return bad(`row ${row.video_id}: ${row.frame_times.length} frame times, expected ${row.num_frames}`);
  }
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
