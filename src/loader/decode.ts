/**
 * Columnar decode of one shard for the loader's workers. It reads Arrow buffers directly
 * (offsets + values) instead of materialising row objects, converts all float16 features of the
 * shard to float32 in one pass into a single transferable buffer, and returns plain columns.
 * Parquet shards are first turned into Arrow by parquet-wasm (arrow-rs).
 */
import type { Data, Table } from 'apache-arrow';
import type { ShardFileFormat } from '../shard/schema.js';
import { float16ToFloat32 } from '../util/float16.js';

/**
 * A text column as one string plus character offsets: item i is
 * `text.slice(offsets[i], offsets[i + 1])`, or null where `valid[i]` is 0. One string per column
 * crosses the thread boundary as a single copy, instead of thousands of small strings.
 */
export interface StringColumn {
  text: string;
  offsets: Int32Array;
  /** Null when the column has no nulls. */
  valid: Uint8Array | null;
}

/** One decoded shard, columns only; every typed array's buffer can be transferred. */
export interface DecodedShard {
  rows: number;
  videoId: StringColumn;
  role: StringColumn;
  language: StringColumn;
  platform: StringColumn;
  profile: StringColumn;
  summary: StringColumn;
  /** Row r's dialogues are dialogues [dialogueStart[r], dialogueStart[r+1]). */
  dialogueStart: Int32Array;
  dialogueId: StringColumn;
  /** Dialogue d's turns are turns [turnStart[d], turnStart[d+1]). */
  turnStart: Int32Array;
  speaker: StringColumn;
  text: StringColumn;
  /** Frames of each row. */
  numFrames: Int32Array;
  /** Prefix sums of numFrames (rows + 1 entries): row r's frames are frames [frameStart[r], frameStart[r+1]). */
  frameStart: Int32Array;
  /** Every row's features, [sum(numFrames), tokensPerFrame, featureDim], float32. */
  frames: Float32Array;
  /** Every row's frame timestamps (seconds), same layout as frameStart. */
  frameTimes: Float64Array;
  /** Bytes this shard occupies once decoded. */
  decodedBytes: number;
}

/** Item i of a string column. */
export function stringAt(col: StringColumn, i: number): string | null {
  if (col.valid && col.valid[i] === 0) return null;
  return col.text.slice(col.offsets[i]!, col.offsets[i + 1]!);
}

/** Typed-array buffers of a decoded shard (to transfer instead of copy). */
export function shardBuffers(s: DecodedShard): ArrayBuffer[] {
  const cols = [s.videoId, s.role, s.language, s.platform, s.profile, s.summary, s.dialogueId, s.speaker, s.text];
  const out: ArrayBuffer[] = [s.dialogueStart.buffer, s.turnStart.buffer, s.numFrames.buffer, s.frameStart.buffer, s.frames.buffer, s.frameTimes.buffer] as ArrayBuffer[];
  for (const c of cols) {
    out.push(c.offsets.buffer as ArrayBuffer);
    if (c.valid) out.push(c.valid.buffer as ArrayBuffer);
  }
  return [...new Set(out)];
}

export interface DecodeOptions {
  /** Name used in error messages (file or URL). */
  name: string;
  format: ShardFileFormat;
  /** Floats per frame: tokensPerFrame * featureDim. */
  floatsPerFrame: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A shard's bytes as columns (`DecodedShard`), features as one float32 buffer; throws naming the shard. */
export async function decodeShardColumns(bytes: Uint8Array, { name, format, floatsPerFrame }: DecodeOptions): Promise<DecodedShard> {
  // shardTable checks the magic bytes and names the shard in its errors; Parquet goes through parquet-wasm.
  const { shardTable } = await import('../shard/read.js');
  return decodeTable(shardTable(bytes, format, { name }), { name, floatsPerFrame });
}

// Note on offsets: arrow-js slices a Data's offsets and values buffers themselves (Data.slice),
// so item k of any Data is at valueOffsets[k] / values[k]; `data.offset` matters only for the
// validity bitmap, which getValid(k) applies.

function column(table: Table, name: string, shard: string): Data[] {
  const child = table.getChild(name);
  if (!child) throw new Error(`${shard}: missing column '${name}'`);
  return child.data as Data[];
}

/** Decode an Arrow table of shard rows (a whole shard, or one block of it). */
export function decodeTable(table: Table, { name, floatsPerFrame }: { name: string; floatsPerFrame: number }): DecodedShard {
  const rows = table.numRows;
  const videoId = stringColumn(column(table, 'video_id', name), name, 'video_id', false);
  const role = stringColumn(column(table, 'role', name), name, 'role', false);
  const language = stringColumn(column(table, 'language', name), name, 'language', true);
  const platform = stringColumn(column(table, 'platform', name), name, 'platform', true);
  const profile = stringColumn(column(table, 'profile', name), name, 'profile', true);
  const summary = stringColumn(column(table, 'summary', name), name, 'summary', true);

  const numFrames = new Int32Array(rows);
  const frameStart = new Int32Array(rows + 1);
  const framesChunks = column(table, 'frames', name);
  const timesChunks = column(table, 'frame_times', name);
  // First pass: frame counts from frame_times, checked against the features' lengths.
  let r = 0;
  for (const data of timesChunks) {
    const off = data.valueOffsets as Int32Array;
    for (let i = 0; i < data.length; i++, r++) {
      const n = Number(off[i + 1]) - Number(off[i]);
      numFrames[r] = n;
      frameStart[r + 1] = frameStart[r]! + n;
    }
  }
  const totalFrames = frameStart[rows]!;
  const frames = new Float32Array(totalFrames * floatsPerFrame);
  const frameTimes = new Float64Array(totalFrames);
  r = 0;
  for (const data of timesChunks) {
    const off = data.valueOffsets as Int32Array;
    const child = data.children[0]!;
    const values = child.values as Float64Array;
    const start = Number(off[0]);
    const end = Number(off[data.length]);
    frameTimes.set(values.subarray(start, end), frameStart[r]!);
    r += data.length;
  }
  r = 0;
  for (const data of framesChunks) {
    const off = data.valueOffsets as Int32Array;
    const child = data.children[0]!;
    const values = child.values as Uint16Array | Float32Array | Float64Array;
    for (let i = 0; i < data.length; i++) {
      const n = Number(off[i + 1]) - Number(off[i]);
      if (n !== numFrames[r + i]! * floatsPerFrame) {
        throw new Error(
          `${name}: row ${r + i} (${stringAt(videoId, r + i)}): frames holds ${n} values, expected ${numFrames[r + i]} frames x ${floatsPerFrame}`,
        );
      }
    }
    const start = Number(off[0]);
    const end = Number(off[data.length]);
    const dst = frames.subarray(frameStart[r]! * floatsPerFrame, frameStart[r + data.length]! * floatsPerFrame);
    if (values instanceof Uint16Array) halfToFloat(values.subarray(start, end), dst);
    else dst.set(values.subarray(start, end));
    r += data.length;
  }

  const dialogues = dialogueColumns(column(table, 'dialogues', name), rows, name);
  const strings = [videoId, role, language, platform, profile, summary, dialogues.dialogueId, dialogues.speaker, dialogues.text];
  let bytes = frames.byteLength + frameTimes.byteLength + 8 * (rows + 1) + dialogues.dialogueStart.byteLength + dialogues.turnStart.byteLength;
  for (const c of strings) bytes += 2 * c.text.length + c.offsets.byteLength + (c.valid?.byteLength ?? 0);
  return {
    rows,
    videoId,
    role,
    language,
    platform,
    profile,
    summary,
    ...dialogues,
    numFrames,
    frameStart,
    frames,
    frameTimes,
    decodedBytes: bytes,
  };
}

/**
 * A string column from Arrow Utf8 / LargeUtf8 chunks: the values bytes decoded once, byte offsets
 * mapped to character offsets (UTF-16 code units) in one scan.
 */
function stringColumn(chunks: Data[], shard: string, field: string, nullable: boolean, expected?: number): StringColumn {
  let n = 0;
  for (const d of chunks) n += d.length;
  if (expected !== undefined && n !== expected) throw new Error(`${shard}: ${field}: ${n} values, expected ${expected}`);
  const offsets = new Int32Array(n + 1);
  let valid: Uint8Array | null = null;
  const parts: string[] = [];
  let chars = 0;
  let i = 0;
  for (const data of chunks) {
    const off = data.valueOffsets as Int32Array | BigInt64Array;
    const b0 = Number(off[0]);
    const b1 = Number(off[data.length]);
    const bytes = (data.values as Uint8Array).subarray(b0, b1);
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new Error(`${shard}: ${field}: invalid UTF-8`);
    }
    parts.push(text);
    if (text.length === bytes.length) {
      // ASCII: character offsets are byte offsets.
      for (let k = 0; k < data.length; k++) offsets[i + k + 1] = chars + Number(off[k + 1]) - b0;
    } else {
      let c = chars;
      let b = 0;
      for (let k = 0; k < data.length; k++) {
        const end = Number(off[k + 1]) - b0;
        for (; b < end; b++) {
          const x = bytes[b]!;
          if ((x & 0xc0) !== 0x80) c += x >= 0xf0 ? 2 : 1; // lead byte; 4-byte sequences are surrogate pairs
        }
        offsets[i + k + 1] = c;
      }
    }
    if (data.nullCount > 0) {
      if (!nullable) {
        for (let k = 0; k < data.length; k++) if (!data.getValid(k)) throw new Error(`${shard}: row ${i + k}: ${field} is null`);
      }
      valid ??= new Uint8Array(n).fill(1);
      for (let k = 0; k < data.length; k++) if (!data.getValid(k)) valid[i + k] = 0;
    }
    chars += text.length;
    i += data.length;
  }
  return { text: parts.length === 1 ? parts[0]! : parts.join(''), offsets, valid };
}

function childByName(data: Data, name: string, shard: string): Data {
  const fields = (data.type as { children: { name: string }[] }).children;
  const k = fields.findIndex((f) => f.name === name);
  if (k < 0) throw new Error(`${shard}: dialogues: missing field '${name}'`);
  return data.children[k]!;
}

/** List offsets of `chunks` rebased into one prefix-sum array of `n + 1` entries. */
function listStarts(chunks: Data[], n: number): Int32Array {
  const out = new Int32Array(n + 1);
  let i = 0;
  let base = 0;
  for (const data of chunks) {
    const off = data.valueOffsets as Int32Array;
    const first = Number(off[0]);
    for (let k = 0; k < data.length; k++) out[i + k + 1] = base + Number(off[k + 1]) - first;
    base = out[i + data.length]!;
    i += data.length;
  }
  return out;
}

/** The dialogues column: List<Struct<dialogue_id, turns: List<Struct<speaker, text>>>> as flat columns. */
function dialogueColumns(chunks: Data[], rows: number, shard: string) {
  const dialogueStart = listStarts(chunks, rows);
  const structs = chunks.map((c) => {
    const off = c.valueOffsets as Int32Array;
    return c.children[0]!.slice(Number(off[0]), Number(off[c.length]) - Number(off[0]));
  });
  const nDialogues = dialogueStart[rows]!;
  const dialogueId = stringColumn(structs.map((d) => childByName(d, 'dialogue_id', shard)), shard, 'dialogues.dialogue_id', false, nDialogues);
  const turnLists = structs.map((d) => childByName(d, 'turns', shard));
  const turnStart = listStarts(turnLists, nDialogues);
  const turnStructs = turnLists.map((c) => {
    const off = c.valueOffsets as Int32Array;
    return c.children[0]!.slice(Number(off[0]), Number(off[c.length]) - Number(off[0]));
  });
  const nTurns = turnStart[nDialogues]!;
  const speaker = stringColumn(turnStructs.map((t) => childByName(t, 'speaker', shard)), shard, 'dialogues.turns.speaker', false, nTurns);
  const text = stringColumn(turnStructs.map((t) => childByName(t, 'text', shard)), shard, 'dialogues.turns.text', false, nTurns);
  return { dialogueStart, dialogueId, turnStart, speaker, text };
}

/** float16 bits -> float32 into `out`: the shard reader's exact conversion. */
export function halfToFloat(src: Uint16Array, out: Float32Array): void {
  float16ToFloat32(src, out);
}
