/**
 * Read a shard file (Arrow IPC file or Parquet) into whole `VideoRow`s, for the tools that want
 * rows (inspect, merge, scanDataset, rate, generate, the tests). `readShard` checks nothing
 * against index.json (a file path has no index entry): the tools read a dataset's shards through
 * `readShardRows` (./source.ts), which checks the bytes by block as it reads them, then decodes
 * them here. The loader does not use these rows: its
 * workers decode columns (../loader/decode.ts, `decodeShardColumns`) and take only `shardTable`
 * from here. Rows are still built from Arrow buffers directly: each row's features are one slice
 * of the child buffer converted to a fresh Float32Array in one pass (float16 through a lookup
 * table), and text columns are decoded from their offsets, without per-element Arrow objects.
 *
 * Parquet is read with parquet-wasm (arrow-rs) into Arrow IPC, then the same decoder: measured in
 * `bench/parquet-libs.ts` against hyparquet, which returns plain JS arrays per element.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DataType, RecordBatch, RecordBatchReader, Table, Type, tableFromIPC, type Data } from 'apache-arrow';
import { RpvError } from '../util/errors.js';
import { SHARD_COLUMNS, type Dialogue, type ShardFileFormat, type VideoRow } from './schema.js';
import { float16ToFloat32 } from '../util/float16.js';
import { SHARD_METADATA_KEY } from './arrow-table.js';
import { checkArrowFile } from './arrow-check.js';

export interface ReadShardOptions {
  /** Name used in error messages when `input` is bytes (default `shard`). */
  name?: string;
  /** Read only these columns' values; the others get empty values (e.g. `['video_id']`). */
  columns?: readonly (typeof SHARD_COLUMNS)[number][];
  /**
   * Expected sha256 (hex) from the index: checked before decoding. Without it a damaged file still
   * fails with an error (framing, metadata counts and offsets are bounds-checked before arrow-js
   * sees them, see arrow-check.ts) but damage inside the values would go unnoticed.
   */
  sha256?: string;
}

/** Format of a shard file from its extension (`.arrow`, `.parquet`), or null. */
export function shardFormatOf(file: string): ShardFileFormat | null {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.arrow' || ext === '.feather' || ext === '.ipc') return 'arrow';
  if (ext === '.parquet') return 'parquet';
  return null;
}

/**
 * Decode a shard: `input` is its bytes or a file path; `format` defaults to the file's
 * extension. Throws RpvError naming the shard on a corrupt file or an unexpected schema.
 */
export async function readShard(input: Uint8Array | string, format?: ShardFileFormat, options: ReadShardOptions = {}): Promise<VideoRow[]> {
  const name = typeof input === 'string' ? input : (options.name ?? 'shard');
  const fmt = format ?? (typeof input === 'string' ? shardFormatOf(input) : null);
  if (!fmt) throw new RpvError(`readShard: ${name}: cannot tell the format from the name; pass 'arrow' or 'parquet'`);
  let bytes: Uint8Array;
  try {
    bytes = typeof input === 'string' ? await fs.readFile(input) : input;
  } catch (err) {
    throw new RpvError(`readShard: ${name}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  return decodeShardRows(bytes, fmt, { ...options, name });
}

/** Synchronous decode of a shard's bytes into rows (what `readShard` does after reading the file). */
export function decodeShardRows(bytes: Uint8Array, format: ShardFileFormat, options: ReadShardOptions = {}): VideoRow[] {
  const name = options.name ?? 'shard';
  if (options.sha256 !== undefined) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== options.sha256) {
      throw new RpvError(`readShard: ${name}: sha256 mismatch: expected ${options.sha256}, file has ${actual} (corrupt or replaced shard)`);
    }
  }
  const table = shardTable(bytes, format, options);
  try {
    return tableToRows(table, name, options.columns);
  } catch (err) {
    if (err instanceof RpvError) throw err;
    // Offsets or buffers that do not fit: a damaged file whose framing survived.
    throw new RpvError(`readShard: ${name}: corrupt ${format} shard: ${errorText(err)}`, { cause: err });
  }
}

/** The shard's bytes as an Arrow table (Parquet goes through parquet-wasm). */
export function shardTable(bytes: Uint8Array, format: ShardFileFormat, options: ReadShardOptions = {}): Table {
  const name = options.name ?? 'shard';
  try {
    if (format === 'arrow') {
      if (bytes.length < 12 || !isArrowFile(bytes)) throw new Error('not an Arrow IPC file (missing ARROW1 magic at start or end)');
      return readArrowFile(bytes);
    }
    if (bytes.length < 12 || !isParquetFile(bytes)) throw new Error('not a Parquet file (missing PAR1 magic at start or end)');
    return readParquetTable(bytes, options.columns);
  } catch (err) {
    if (err instanceof RpvError) throw err;
    throw new RpvError(`readShard: ${name}: corrupt ${format} shard: ${errorText(err)}`, { cause: err });
  }
}

/**
 * Arrow IPC file -> table through the file reader and its footer only, after the structural
 * checks of arrow-check.ts: on a damaged file arrow-js's `tableFromIPC` can loop for minutes, and
 * a corrupt shard must give an error, never a hang in a loader worker.
 */
function readArrowFile(bytes: Uint8Array): Table {
  checkArrowFile(bytes);
  const reader = RecordBatchReader.from(bytes);
  if (!reader.isSync() || !reader.isFile()) throw new Error('not an Arrow IPC file');
  reader.open();
  const batches: RecordBatch[] = [];
  for (let i = 0; i < reader.numRecordBatches; i++) {
    const batch = reader.readRecordBatch(i);
    if (!batch) throw new Error(`record batch ${i} of ${reader.numRecordBatches} is unreadable`);
    batches.push(batch);
  }
  return new Table(reader.schema, batches);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isArrowFile(b: Uint8Array): boolean {
  const magic = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // ARROW1
  for (let i = 0; i < 6; i++) if (b[i] !== magic[i] || b[b.length - 6 + i] !== magic[i]) return false;
  return true;
}

function isParquetFile(b: Uint8Array): boolean {
  const magic = [0x50, 0x41, 0x52, 0x31]; // PAR1
  for (let i = 0; i < 4; i++) if (b[i] !== magic[i] || b[b.length - 4 + i] !== magic[i]) return false;
  return true;
}

let parquetWasm: typeof import('parquet-wasm') | undefined;

function readParquetTable(bytes: Uint8Array, columns?: readonly string[]): Table {
  parquetWasm ??= requireParquetWasm();
  const wasmTable = parquetWasm.readParquet(bytes, columns ? { columns: [...columns] } : undefined);
  return tableFromIPC(wasmTable.intoIPCStream());
}

// parquet-wasm's Node build (CommonJS) loads its wasm synchronously; load it on first use so
// Arrow-only readers (the loader's workers on Arrow shards) never pay for it.
const require = createRequire(import.meta.url);
function requireParquetWasm(): typeof import('parquet-wasm') {
  return require('parquet-wasm') as typeof import('parquet-wasm');
}

/** Feature dims recorded in a shard's schema metadata, when present. */
export function shardMetadata(table: Table): { version: number; featureDim: number; tokensPerFrame: number; dtype: string } | null {
  const raw = table.schema.metadata.get(SHARD_METADATA_KEY);
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

const decoder = new TextDecoder();

/** Reads a Utf8 / LargeUtf8 column without building Arrow row objects. */
function stringAt(data: Data, i: number): string | null {
  if (!data.getValid(i)) return null;
  const offsets = data.valueOffsets as Int32Array | BigInt64Array;
  const begin = Number(offsets[i]);
  const end = Number(offsets[i + 1]);
  return decoder.decode((data.values as Uint8Array).subarray(begin, end));
}

function expectType(name: string, column: string, data: Data | undefined, check: (t: DataType) => boolean, expected: string): Data {
  if (!data) throw new RpvError(`readShard: ${name}: missing column ${column}`);
  if (!check(data.type)) throw new RpvError(`readShard: ${name}: column ${column}: expected ${expected}, found ${String(data.type)}`);
  checkOffsets(name, column, data);
  return data;
}

/**
 * Offsets of a list or string column must start >= 0, never decrease and end within the child:
 * checked once per column so a damaged file fails fast instead of decoding garbage lengths.
 */
function checkOffsets(name: string, column: string, data: Data): void {
  const offsets = data.valueOffsets as ArrayLike<number | bigint> | undefined;
  if (!offsets) return;
  const limit = data.children[0] ? data.children[0].length : (data.values as Uint8Array | undefined)?.length ?? 0;
  if (offsets.length < data.length + 1) throw new RpvError(`readShard: ${name}: corrupt shard: column ${column}: ${offsets.length} offsets for ${data.length} rows`);
  let prev = Number(offsets[0]);
  if (prev < 0) throw new RpvError(`readShard: ${name}: corrupt shard: column ${column}: negative offset`);
  for (let i = 1; i <= data.length; i++) {
    const next = Number(offsets[i]);
    if (next < prev) throw new RpvError(`readShard: ${name}: corrupt shard: column ${column}: offsets decrease at row ${i - 1}`);
    prev = next;
  }
  if (prev > limit) throw new RpvError(`readShard: ${name}: corrupt shard: column ${column}: offsets reach ${prev}, past the ${limit} values present`);
}

const isString = (t: DataType) => t.typeId === Type.Utf8 || t.typeId === Type.LargeUtf8;
const isList = (t: DataType) => t.typeId === Type.List || t.typeId === Type.LargeList;

/** Arrow table in the shard schema -> rows. */
export function tableToRows(table: Table, name = 'shard', columns?: readonly string[]): VideoRow[] {
  const wanted = (c: string) => !columns || columns.includes(c);
  for (const c of SHARD_COLUMNS) {
    if (wanted(c) && !table.schema.fields.some((f) => f.name === c)) throw new RpvError(`readShard: ${name}: missing column ${c}`);
  }
  const rows: VideoRow[] = [];
  for (const batch of table.batches) {
    const col = (c: string): Data | undefined => {
      const idx = batch.schema.fields.findIndex((f) => f.name === c);
      return idx < 0 ? undefined : batch.data.children[idx];
    };
    const str = (c: string) => (wanted(c) ? expectType(name, c, col(c), isString, 'Utf8') : null);
    const videoId = str('video_id');
    const source = str('source');
    const role = str('role');
    const language = str('language');
    const platform = str('platform');
    const profile = str('profile');
    const summary = str('summary');
    const duration = wanted('duration_sec') ? expectType(name, 'duration_sec', col('duration_sec'), (t) => t.typeId === Type.Float, 'Float64') : null;
    const numFrames = wanted('num_frames') ? expectType(name, 'num_frames', col('num_frames'), (t) => t.typeId === Type.Int, 'Int32') : null;
    const times = wanted('frame_times') ? expectType(name, 'frame_times', col('frame_times'), isList, 'List<Float64>') : null;
    const frames = wanted('frames') ? expectType(name, 'frames', col('frames'), isList, 'List<Float16|Float32>') : null;
    const dialogues = wanted('dialogues') ? expectType(name, 'dialogues', col('dialogues'), isList, 'List<Struct<dialogue_id, turns>>') : null;

    const timeValues = times ? (times.children[0]!.values as Float64Array) : null;
    const frameChild = frames ? frames.children[0]! : null;
    const frameIsHalf = frameChild?.type.typeId === Type.Float && (frameChild.type as unknown as { precision: number }).precision === 0;
    if (frameChild && (frameChild.type.typeId !== Type.Float || (frameChild.type as unknown as { precision: number }).precision === 2)) {
      throw new RpvError(`readShard: ${name}: column frames: expected List<Float16|Float32>, found ${String(frames!.type)}`);
    }
    const dialogueDecoder = dialogues ? makeDialogueDecoder(dialogues, name) : null;

    for (let i = 0; i < batch.numRows; i++) {
      // Fresh arrays per row (never shared), so a worker may transfer each row's buffers.
      let frameValues: Float32Array = new Float32Array(0);
      if (frames && frameChild) {
        const begin = Number(frames.valueOffsets[i]);
        const end = Number(frames.valueOffsets[i + 1]);
        frameValues = frameIsHalf
          ? float16ToFloat32((frameChild.values as Uint16Array).subarray(begin, end))
          : (frameChild.values as Float32Array).slice(begin, end);
      }
      let frameTimes: Float64Array = new Float64Array(0);
      if (times && timeValues) frameTimes = timeValues.slice(Number(times.valueOffsets[i]), Number(times.valueOffsets[i + 1]));
      rows.push({
        video_id: videoId ? (stringAt(videoId, i) ?? '') : '',
        source: source ? (stringAt(source, i) ?? '') : '',
        role: role ? (stringAt(role, i) ?? '') : '',
        language: language ? stringAt(language, i) : null,
        platform: platform ? stringAt(platform, i) : null,
        profile: profile ? stringAt(profile, i) : null,
        summary: summary ? stringAt(summary, i) : null,
        duration_sec: duration && duration.getValid(i) ? Number((duration.values as Float64Array)[i]) : null,
        num_frames: numFrames ? Number((numFrames.values as Int32Array)[i]) : frameTimes.length,
        frame_times: frameTimes,
        frames: frameValues,
        dialogues: dialogueDecoder ? dialogueDecoder(i) : [],
      });
    }
  }
  return rows;
}


function childByName(data: Data, name: string): Data | undefined {
  const fields = (data.type as { children: { name: string }[] }).children;
  const idx = fields.findIndex((f) => f.name === name);
  return idx < 0 ? undefined : data.children[idx];
}

/** Decoder of row i's dialogues from List<Struct<dialogue_id, turns: List<Struct<speaker, text>>>>. */
function makeDialogueDecoder(dialogues: Data, name: string): (i: number) => Dialogue[] {
  const struct = dialogues.children[0]!;
  if (struct.type.typeId !== Type.Struct) throw new RpvError(`readShard: ${name}: column dialogues: expected List<Struct>, found ${String(dialogues.type)}`);
  const ids = expectType(name, 'dialogues.dialogue_id', childByName(struct, 'dialogue_id'), isString, 'Utf8');
  const turns = expectType(name, 'dialogues.turns', childByName(struct, 'turns'), isList, 'List<Struct<speaker, text>>');
  const turnStruct = turns.children[0]!;
  const speakers = expectType(name, 'dialogues.turns.speaker', childByName(turnStruct, 'speaker'), isString, 'Utf8');
  const texts = expectType(name, 'dialogues.turns.text', childByName(turnStruct, 'text'), isString, 'Utf8');
  return (i) => {
    const out: Dialogue[] = [];
    const dBegin = Number(dialogues.valueOffsets[i]);
    const dEnd = Number(dialogues.valueOffsets[i + 1]);
    for (let d = dBegin; d < dEnd; d++) {
      const tBegin = Number(turns.valueOffsets[d]);
      const tEnd = Number(turns.valueOffsets[d + 1]);
      const list = [];
      for (let t = tBegin; t < tEnd; t++) list.push({ speaker: stringAt(speakers, t) ?? '', text: stringAt(texts, t) ?? '' });
      out.push({ dialogue_id: stringAt(ids, d) ?? '', turns: list });
    }
    return out;
  };
}
