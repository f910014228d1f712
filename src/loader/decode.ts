/**
 * Columnar decode of one shard for the loader's workers. It reads Arrow buffers directly
 * (offsets + values) instead of materialising row objects, converts all float16 features of the
 * shard to float32 in one pass into a single transferable buffer, and returns plain columns.
 * Parquet shards are first turned into Arrow by parquet-wasm (arrow-rs).
 */
import type { Data, Table } from 'apache-arrow';
import type { Dialogue, ShardFileFormat } from '../shard/schema.js';
import { float16ToFloat32 } from '../shard/float16.js';

/** One decoded shard, columns only; every typed array's buffer can be transferred. */
export interface DecodedShard {
  rows: number;
  videoId: string[];
  role: string[];
  language: (string | null)[];
  platform: (string | null)[];
  profile: (string | null)[];
  summary: (string | null)[];
  /** Frames of each row. */
  numFrames: Int32Array;
  /** Prefix sums of numFrames (rows + 1 entries): row r's frames are frames [frameStart[r], frameStart[r+1]). */
  frameStart: Int32Array;
  /** Every row's features, [sum(numFrames), tokensPerFrame, featureDim], float32. */
  frames: Float32Array;
  /** Every row's frame timestamps (seconds), same layout as frameStart. */
  frameTimes: Float64Array;
  dialogues: Dialogue[][];
  /** Bytes this shard occupies once decoded (typed arrays + an estimate for strings). */
  decodedBytes: number;
}

export interface DecodeOptions {
  /** Name used in error messages (file or URL). */
  name: string;
  format: ShardFileFormat;
  /** Floats per frame: tokensPerFrame * featureDim. */
  frameSize: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export async function decodeShard(bytes: Uint8Array, { name, format, frameSize }: DecodeOptions): Promise<DecodedShard> {
  // shardTable checks the magic bytes and names the shard in its errors; Parquet goes through parquet-wasm.
  const { shardTable } = await import('../shard/read.js');
  return decodeTable(shardTable(bytes, format, { name }), { name, frameSize });
}

function column(table: Table, name: string, shard: string): Data[] {
  const child = table.getChild(name);
  if (!child) throw new Error(`${shard}: missing column '${name}'`);
  return child.data as Data[];
}

function decodeTable(table: Table, { name, frameSize }: { name: string; frameSize: number }): DecodedShard {
  const rows = table.numRows;
  const videoId = strings(column(table, 'video_id', name), rows, name, 'video_id', false) as string[];
  const role = strings(column(table, 'role', name), rows, name, 'role', false) as string[];
  const language = strings(column(table, 'language', name), rows, name, 'language', true);
  const platform = strings(column(table, 'platform', name), rows, name, 'platform', true);
  const profile = strings(column(table, 'profile', name), rows, name, 'profile', true);
  const summary = strings(column(table, 'summary', name), rows, name, 'summary', true);

  const numFrames = new Int32Array(rows);
  const frameStart = new Int32Array(rows + 1);
  const framesChunks = column(table, 'frames', name);
  const timesChunks = column(table, 'frame_times', name);
  // First pass: frame counts from frame_times, checked against the features' lengths.
  let r = 0;
  for (const data of timesChunks) {
    const off = data.valueOffsets as Int32Array;
    for (let i = 0; i < data.length; i++, r++) {
      const n = Number(off[data.offset + i + 1]) - Number(off[data.offset + i]);
      numFrames[r] = n;
      frameStart[r + 1] = frameStart[r]! + n;
    }
  }
  const totalFrames = frameStart[rows]!;
  const frames = new Float32Array(totalFrames * frameSize);
  const frameTimes = new Float64Array(totalFrames);
  r = 0;
  for (const data of timesChunks) {
    const off = data.valueOffsets as Int32Array;
    const child = data.children[0]!;
    const values = child.values as Float64Array;
    const start = Number(off[data.offset]) + child.offset;
    const end = Number(off[data.offset + data.length]) + child.offset;
    frameTimes.set(values.subarray(start, end), frameStart[r]!);
    r += data.length;
  }
  r = 0;
  for (const data of framesChunks) {
    const off = data.valueOffsets as Int32Array;
    const child = data.children[0]!;
    const values = child.values as Uint16Array | Float32Array | Float64Array;
    for (let i = 0; i < data.length; i++) {
      const n = Number(off[data.offset + i + 1]) - Number(off[data.offset + i]);
      if (n !== numFrames[r + i]! * frameSize) {
        throw new Error(
          `${name}: row ${r + i} (${videoId[r + i]}): frames holds ${n} values, expected ${numFrames[r + i]} frames x ${frameSize}`,
        );
      }
    }
    const start = Number(off[data.offset]) + child.offset;
    const end = Number(off[data.offset + data.length]) + child.offset;
    const dst = frames.subarray(frameStart[r]! * frameSize, frameStart[r + data.length]! * frameSize);
    if (values instanceof Uint16Array) float16ToFloat32(values.subarray(start, end), dst);
    else dst.set(values.subarray(start, end));
    r += data.length;
  }

  const dialogues = decodeDialogues(column(table, 'dialogues', name), rows, name, videoId);
  let stringBytes = 0;
  for (let i = 0; i < rows; i++) {
    stringBytes += 2 * ((profile[i]?.length ?? 0) + (summary[i]?.length ?? 0) + videoId[i]!.length + role[i]!.length);
    for (const d of dialogues[i]!) for (const t of d.turns) stringBytes += 2 * (t.text.length + t.speaker.length) + 64;
  }
  return {
    rows,
    videoId,
    role,
    language,
    platform,
    profile,
    summary,
    numFrames,
    frameStart,
    frames,
    frameTimes,
    dialogues,
    decodedBytes: frames.byteLength + frameTimes.byteLength + 8 * rows + stringBytes,
  };
}

function utf8At(data: Data, i: number): string {
  const off = data.valueOffsets as Int32Array | BigInt64Array;
  const s = Number(off[data.offset + i]);
  const e = Number(off[data.offset + i + 1]);
  return utf8.decode((data.values as Uint8Array).subarray(s, e));
}

function isNull(data: Data, i: number): boolean {
  return data.nullCount > 0 && !data.getValid(i);
}

function strings(chunks: Data[], rows: number, shard: string, field: string, nullable: boolean): (string | null)[] {
  const out: (string | null)[] = new Array(rows);
  let r = 0;
  for (const data of chunks) {
    for (let i = 0; i < data.length; i++, r++) {
      if (isNull(data, i)) {
        if (!nullable) throw new Error(`${shard}: row ${r}: ${field} is null`);
        out[r] = null;
      } else out[r] = utf8At(data, i);
    }
  }
  return out;
}

function childByName(data: Data, name: string, shard: string): Data {
  const fields = (data.type as { children: { name: string }[] }).children;
  const k = fields.findIndex((f) => f.name === name);
  if (k < 0) throw new Error(`${shard}: dialogues: missing field '${name}'`);
  return data.children[k]!;
}

function decodeDialogues(chunks: Data[], rows: number, shard: string, videoId: string[]): Dialogue[][] {
  const out: Dialogue[][] = new Array(rows);
  let r = 0;
  for (const list of chunks) {
    const dOff = list.valueOffsets as Int32Array;
    const dStruct = list.children[0]!;
    const dId = childByName(dStruct, 'dialogue_id', shard);
    const turnsList = childByName(dStruct, 'turns', shard);
    const tOff = turnsList.valueOffsets as Int32Array;
    const tStruct = turnsList.children[0]!;
    const speaker = childByName(tStruct, 'speaker', shard);
    const text = childByName(tStruct, 'text', shard);
    for (let i = 0; i < list.length; i++, r++) {
      const row: Dialogue[] = [];
      const d0 = Number(dOff[list.offset + i]);
      const d1 = Number(dOff[list.offset + i + 1]);
      for (let d = d0; d < d1; d++) {
        const di = d + dStruct.offset;
        if (isNull(dId, di)) throw new Error(`${shard}: row ${r} (${videoId[r]}): dialogue ${d - d0}: dialogue_id is null`);
        const turns = [];
        const t0 = Number(tOff[turnsList.offset + di]);
        const t1 = Number(tOff[turnsList.offset + di + 1]);
        for (let t = t0; t < t1; t++) {
          const ti = t + tStruct.offset;
          turns.push({ speaker: utf8At(speaker, ti), text: utf8At(text, ti) });
        }
        row.push({ dialogue_id: utf8At(dId, di), turns });
      }
      out[r] = row;
    }
  }
  return out;
}
