/**
 * Test datasets for the loader, written with the converter's real shard writer and index
 * writer: every value is derived from (video, frame, feature) so a test can check what it got.
 */
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION, type FeatureSchema, type ShardEntry, type ShardFileFormat, type ShardIndex, type VideoRow } from '../../src/shard/schema.js';
import { writeShardFile } from '../../src/shard/write.js';
import { readShardIndex, writeShardIndex } from '../../src/shard/index-file.js';

export interface DatasetSpec {
  shards: number;
  rowsPerShard: number;
  /** Dialogues of video v (default 1 + v % 4). */
  dialogues?: (v: number) => number;
  /** Frames of video v (default v % 5: some text-only rows). */
  frames?: (v: number) => number;
  tokensPerFrame?: number;
  featureDim?: number;
  dtype?: 'float16' | 'float32';
  formats?: ShardFileFormat[];
  /** Cut shards into blocks of at most this many Arrow bytes (default: the writer's 16 MiB). */
  blockBytes?: number;
}

/** What a checksum mismatch tells the user to do, word for word (src/shard/verify.ts). */
export const LOCAL_ADVICE =
  'the bytes differ from those index.json lists (the file was damaged or changed after it was written); re-download or re-convert this shard (rpv inspect --verify checks every shard)';
export const REMOTE_ADVICE =
  "the bytes differ from those index.json lists (the server's copy was damaged or changed after it was written); upload or re-convert this shard (rpv inspect --verify checks every shard)";

/** The feature value every test expects at (video v, frame f, element k). */
export function featureValue(v: number, f: number, k: number): number {
  return v * 16 + f + k / 64;
}

export function makeRow(v: number, spec: DatasetSpec): VideoRow {
  const tpf = spec.tokensPerFrame ?? 2;
  const dim = spec.featureDim ?? 4;
  const n = (spec.frames ?? ((i) => i % 5))(v);
  const frames = new Float32Array(n * tpf * dim);
  for (let f = 0; f < n; f++) for (let k = 0; k < tpf * dim; k++) frames[f * tpf * dim + k] = featureValue(v, f, k);
  const nd = (spec.dialogues ?? ((i) => 1 + (i % 4)))(v);
  return {
    video_id: `v${String(v).padStart(5, '0')}`,
    source: `annotations.jsonl:${v + 1}`,
    role: v % 2 ? 'Lin' : 'Ada',
    language: v % 3 ? 'en' : 'zh',
    platform: null,
    profile: v % 2 ? `profile of Lin ${v}` : null,
    summary: `summary ${v} 视频`,
    duration_sec: n > 0 ? n * 1.5 : null,
    num_frames: n,
    frame_times: Float64Array.from({ length: n }, (_, f) => f * 1.5 + 0.75),
    frames,
    dialogues: Array.from({ length: nd }, (_, d) => ({
      dialogue_id: `d${d}`,
      turns: [
        { speaker: 'user', text: `hello ${v}.${d} 😀` },
        { speaker: v % 2 ? 'Lin' : 'Ada', text: `reply ${v}.${d}` },
      ],
    })),
  };
}

/** Write a dataset to `dir`; returns its index. */
export async function makeDataset(dir: string, spec: DatasetSpec): Promise<ShardIndex> {
  const schema: FeatureSchema = { featureDim: spec.featureDim ?? 4, tokensPerFrame: spec.tokensPerFrame ?? 2, dtype: spec.dtype ?? 'float32' };
  const entries: ShardEntry[] = [];
  let rows = 0;
  let dialogues = 0;
  let frames = 0;
  let bytes = 0;
  for (let s = 0; s < spec.shards; s++) {
    const shardRows = Array.from({ length: spec.rowsPerShard }, (_, i) => makeRow(s * spec.rowsPerShard + i, spec));
    for (const format of spec.formats ?? ['arrow']) {
      const entry = await writeShardFile(shardRows, path.join(dir, `shard-${String(s).padStart(5, '0')}.${format}`), { format, schema, blockBytes: spec.blockBytes });
      entries.push(entry);
      bytes += entry.bytes;
    }
    rows += shardRows.length;
    for (const r of shardRows) {
      dialogues += r.dialogues.length;
      frames += r.num_frames;
    }
  }
  const index: ShardIndex = {
    format: SHARD_FORMAT_NAME,
    version: SHARD_FORMAT_VERSION,
    created: new Date(0).toISOString(),
    schema: { ...schema, columns: SHARD_COLUMNS },
    sampling: { fps: 1, minFrames: 4, maxFrames: 16, frameSize: 32 },
    encoder: { id: 'test' },
    shards: entries,
    totals: { rows, dialogues, frames, bytes, shards: spec.shards },
    counts: { read: rows, converted: rows, skipped: 0 },
    skipped: [],
  };
  await writeShardIndex(dir, index);
  return index;
}

/**
 * Change the bytes of shard `file` of the dataset at `dir` in place: `edit` changes them and returns
 * the position of a changed byte. Returns the part of the file that holds it as checksum errors name
 * it: `block 2 of 3 (bytes A-B)`, the head and tail, or the whole file for an entry without block
 * hashes.
 */
export async function editShard(dir: string, file: string, edit: (bytes: Buffer) => number): Promise<string> {
  const entry = (await readShardIndex(dir)).shards.find((s) => s.file === file)!;
  const where = path.join(dir, file);
  const bytes = await fs.readFile(where);
  const at = edit(bytes);
  await fs.writeFile(where, bytes);
  const offsets = entry.blockOffsets;
  if (!offsets) return `whole file (bytes 0-${bytes.length - 1})`;
  const b = offsets.findIndex((o, i) => i + 1 < offsets.length && o <= at && at < offsets[i + 1]!);
  if (b < 0) return `head and tail (bytes 0-${offsets[0]! - 1} and ${offsets[offsets.length - 1]}-${bytes.length - 1})`;
  return `block ${b + 1} of ${offsets.length - 1} (bytes ${offsets[b]}-${offsets[b + 1]! - 1})`;
}

/** Flip the middle byte of a shard file (see `editShard`). */
export function flipShardByte(dir: string, file: string): Promise<string> {
  return editShard(dir, file, (bytes) => {
    const at = bytes.length >> 1;
    bytes[at]! ^= 0xff;
    return at;
  });
}

/** Replace the first `from` in a shard file by `to`, as long (see `editShard`): text that still decodes. */
export function replaceShardText(dir: string, file: string, from: string, to: string): Promise<string> {
  return editShard(dir, file, (bytes) => {
    const at = bytes.indexOf(Buffer.from(from));
    if (at < 0 || Buffer.byteLength(to) !== Buffer.byteLength(from)) throw new Error(`replaceShardText: ${file}: no "${from}", or "${to}" is not as long`);
    Buffer.from(to).copy(bytes, at);
    return at;
  });
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `rpv-loader-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every batch of one pass over `loader` (the rest of its current epoch). */
export async function collect<B>(loader: AsyncIterable<B>, limit = Infinity): Promise<B[]> {
  const out: B[] = [];
  if (limit <= 0) return out;
  for await (const b of loader) {
    out.push(b);
    if (out.length >= limit) break;
  }
  return out;
}
