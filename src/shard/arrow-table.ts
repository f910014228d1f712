/**
 * VideoRow[] <-> Arrow record batch, built column by column with explicit types (no type
 * inference, no per-element builders), so the layout is exactly the one `schema.ts` specifies.
 * Used by the Arrow IPC writer directly and by the Parquet writer via arrow-rs.
 */
import {
  Field,
  Float16,
  Float32,
  Float64,
  Int32,
  List,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  makeData,
  type Data,
  type DataType,
} from 'apache-arrow';
import { SHARD_FORMAT_VERSION, type FeatureDType, type FeatureSchema, type VideoRow } from './schema.js';
import { float32ToFloat16 } from '../util/float16.js';

/** Schema metadata key holding `{version, featureDim, tokensPerFrame, dtype}` as JSON. */
export const SHARD_METADATA_KEY = 'rpv.schema';

const turnType = new Struct([new Field('speaker', new Utf8(), false), new Field('text', new Utf8(), false)]);
const dialogueType = new Struct([
  new Field('dialogue_id', new Utf8(), false),
  new Field('turns', new List(new Field('item', turnType, false)), false),
]);

/** The Arrow schema of a shard whose features are stored as `dtype`. */
export function shardArrowSchema(schema: FeatureSchema): Schema {
  const featureType = schema.dtype === 'float16' ? new Float16() : new Float32();
  const metadata = new Map([
    [
      SHARD_METADATA_KEY,
      JSON.stringify({ version: SHARD_FORMAT_VERSION, featureDim: schema.featureDim, tokensPerFrame: schema.tokensPerFrame, dtype: schema.dtype }),
    ],
  ]);
  return new Schema(
    [
      new Field('video_id', new Utf8(), false),
      new Field('source', new Utf8(), false),
      new Field('role', new Utf8(), false),
      new Field('language', new Utf8(), true),
      new Field('platform', new Utf8(), true),
      new Field('profile', new Utf8(), true),
      new Field('summary', new Utf8(), true),
      new Field('duration_sec', new Float64(), true),
      new Field('num_frames', new Int32(), false),
      new Field('frame_times', new List(new Field('item', new Float64(), false)), false),
      new Field('frames', new List(new Field('item', featureType, false)), false),
      new Field('dialogues', new List(new Field('item', dialogueType, false)), false),
    ],
    metadata,
  );
}

const encoder = new TextEncoder();

/** Utf8 column; `null` entries are nulls (only where the field is nullable). */
function utf8Data(values: readonly (string | null)[]): Data<Utf8> {
  const encoded: Uint8Array[] = new Array(values.length);
  let total = 0;
  let nullCount = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) {
      nullCount++;
      encoded[i] = EMPTY;
    } else {
      encoded[i] = encoder.encode(v);
      total += encoded[i]!.length;
    }
  }
  const offsets = new Int32Array(values.length + 1);
  const bytes = new Uint8Array(total);
  let pos = 0;
  for (let i = 0; i < encoded.length; i++) {
    bytes.set(encoded[i]!, pos);
    pos += encoded[i]!.length;
    offsets[i + 1] = pos;
  }
  const nullBitmap = nullCount > 0 ? validity(values.map((v) => v !== null && v !== undefined)) : undefined;
  return makeData({ type: new Utf8(), length: values.length, nullCount, valueOffsets: offsets, data: bytes, nullBitmap });
}

const EMPTY = new Uint8Array(0);

function validity(valid: readonly boolean[]): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(valid.length / 8));
  for (let i = 0; i < valid.length; i++) if (valid[i]) bitmap[i >> 3]! |= 1 << (i & 7);
  return bitmap;
}

function listData<T extends DataType>(child: Data<T>, offsets: Int32Array, itemField: Field<T>): Data<List<T>> {
  return makeData({ type: new List(itemField), length: offsets.length - 1, nullCount: 0, valueOffsets: offsets, child });
}

/** Offsets of consecutive runs of the given lengths. */
function offsetsOf(lengths: readonly number[]): Int32Array {
  const offsets = new Int32Array(lengths.length + 1);
  for (let i = 0; i < lengths.length; i++) {
    const next = offsets[i]! + lengths[i]!;
    if (next > 0x7fffffff) {
      // Arrow List offsets are int32: one column of one shard holds at most 2^31-1 elements.
      throw new RangeError(`shard: a column exceeds 2^31-1 elements (Arrow List offsets are int32); lower --max-shard-bytes`);
    }
    offsets[i + 1] = next;
  }
  return offsets;
}

/** Check each row's frames against the schema: length = num_frames * tokensPerFrame * featureDim. */
export function checkRow(row: VideoRow, schema: FeatureSchema): void {
  const expected = row.num_frames * schema.tokensPerFrame * schema.featureDim;
  if (row.frames.length !== expected) {
    throw new RangeError(
      `shard: row ${row.video_id}: frames has ${row.frames.length} values, expected num_frames ${row.num_frames} x tokensPerFrame ${schema.tokensPerFrame} x featureDim ${schema.featureDim} = ${expected}`,
    );
  }
  if (row.frame_times.length !== row.num_frames) {
    throw new RangeError(`shard: row ${row.video_id}: frame_times has ${row.frame_times.length} values, expected num_frames ${row.num_frames}`);
  }
}

/** The rows as one Arrow table (one record batch) in the shard schema. */
export function rowsToTable(rows: readonly VideoRow[], schema: FeatureSchema): Table {
  const arrowSchema = shardArrowSchema(schema);
  const fields = arrowSchema.fields;
  const n = rows.length;
  for (const row of rows) checkRow(row, schema);

  const durations = new Float64Array(n);
  const durationValid: boolean[] = new Array(n);
  const numFrames = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const d = rows[i]!.duration_sec;
    durationValid[i] = d !== null && d !== undefined;
    durations[i] = d ?? 0;
    numFrames[i] = rows[i]!.num_frames;
  }
  const durationNulls = durationValid.filter((v) => !v).length;

  // frame_times and frames: concatenate every row's values into one child buffer.
  const timeOffsets = offsetsOf(rows.map((r) => r.frame_times.length));
  const times = new Float64Array(timeOffsets[n]!);
  const frameOffsets = offsetsOf(rows.map((r) => r.frames.length));
  // Each row's features go straight into the column's buffer (halves converted on the way).
  const featureValues = schema.dtype === 'float16' ? new Uint16Array(frameOffsets[n]!) : new Float32Array(frameOffsets[n]!);
  for (let i = 0; i < n; i++) {
    times.set(rows[i]!.frame_times, timeOffsets[i]!);
    const frames = rows[i]!.frames;
    if (featureValues instanceof Uint16Array) float32ToFloat16(frames, featureValues.subarray(frameOffsets[i]!, frameOffsets[i + 1]!));
    else featureValues.set(frames, frameOffsets[i]!);
  }
  const featureType = schema.dtype === 'float16' ? new Float16() : new Float32();
  const frameChild =
    featureValues instanceof Uint16Array
      ? makeData({ type: featureType as Float16, length: featureValues.length, nullCount: 0, data: featureValues })
      : makeData({ type: featureType as Float32, length: featureValues.length, nullCount: 0, data: featureValues });

  // dialogues: List<Struct<dialogue_id, turns: List<Struct<speaker, text>>>>
  const dialogueIds: string[] = [];
  const turnCounts: number[] = [];
  const speakers: string[] = [];
  const texts: string[] = [];
  const dialogueCounts: number[] = [];
  for (const row of rows) {
    dialogueCounts.push(row.dialogues.length);
    for (const dialogue of row.dialogues) {
      dialogueIds.push(dialogue.dialogue_id);
      turnCounts.push(dialogue.turns.length);
      for (const turn of dialogue.turns) {
        speakers.push(turn.speaker);
        texts.push(turn.text);
      }
    }
  }
  const turnsStruct = makeData({ type: turnType, length: speakers.length, nullCount: 0, children: [utf8Data(speakers), utf8Data(texts)] });
  const turnsList = listData(turnsStruct, offsetsOf(turnCounts), new Field('item', turnType, false));
  const dialogueStruct = makeData({ type: dialogueType, length: dialogueIds.length, nullCount: 0, children: [utf8Data(dialogueIds), turnsList] });

  const columns: Data[] = [
    utf8Data(rows.map((r) => r.video_id)),
    utf8Data(rows.map((r) => r.source)),
    utf8Data(rows.map((r) => r.role)),
    utf8Data(rows.map((r) => r.language ?? null)),
    utf8Data(rows.map((r) => r.platform ?? null)),
    utf8Data(rows.map((r) => r.profile ?? null)),
    utf8Data(rows.map((r) => r.summary ?? null)),
    makeData({
      type: new Float64(),
      length: n,
      nullCount: durationNulls,
      data: durations,
      nullBitmap: durationNulls > 0 ? validity(durationValid) : undefined,
    }),
    makeData({ type: new Int32(), length: n, nullCount: 0, data: numFrames }),
    listData(makeData({ type: new Float64(), length: times.length, nullCount: 0, data: times }), timeOffsets, new Field('item', new Float64(), false)),
    listData(frameChild as Data, frameOffsets, new Field('item', featureType, false)),
    listData(dialogueStruct, offsetsOf(dialogueCounts), new Field('item', dialogueType, false)),
  ];
  for (const row of rows) {
    for (const key of ['video_id', 'source', 'role'] as const) {
      if (typeof row[key] !== 'string') throw new TypeError(`shard: row ${row.video_id}: ${key} must be a string, found ${typeof row[key]}`);
    }
  }
  const struct = makeData({ type: new Struct(fields), length: n, nullCount: 0, children: columns });
  return new Table(arrowSchema, new RecordBatch(arrowSchema, struct));
}

/**
 * Bytes a row adds to an Arrow IPC shard (values, offsets and text), used to rotate shards
 * at `maxShardBytes` before encoding. Deterministic, so a resumed conversion cuts shards at the
 * same rows as an uninterrupted one.
 */
export function estimateRowBytes(row: VideoRow, dtype: FeatureDType): number {
  let bytes = 64 + row.frames.length * (dtype === 'float16' ? 2 : 4) + row.frame_times.length * 8;
  for (const s of [row.video_id, row.source, row.role, row.language, row.platform, row.profile, row.summary]) {
    if (s) bytes += Buffer.byteLength(s) + 4;
  }
  for (const dialogue of row.dialogues) {
    bytes += Buffer.byteLength(dialogue.dialogue_id) + 12;
    for (const turn of dialogue.turns) bytes += Buffer.byteLength(turn.speaker) + Buffer.byteLength(turn.text) + 12;
  }
  return bytes;
}
