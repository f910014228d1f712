/**
 * The rpv shard schema: one row per video, all its dialogues inside. The full specification,
 * with the index file, is in `shards/README.md`; this file is its single source in code.
 *
 * Arrow schema of every shard (Arrow IPC file or Parquet):
 *
 * | column        | Arrow type                                                             |
 * |---------------|------------------------------------------------------------------------|
 * | video_id      | Utf8, unique in a dataset                                              |
 * | source        | Utf8: the input file and line the row came from (`annotations.jsonl:12`) |
 * | role          | Utf8: the role's name                                                  |
 * | language      | Utf8, nullable (`zh`, `en`, ...)                                        |
 * | platform      | Utf8, nullable (`douyin`, `bilibili`, ...)                              |
 * | profile       | Utf8, nullable: the role's static profile                               |
 * | summary       | Utf8, nullable: a summary of the video                                  |
 * | duration_sec  | Float64, nullable (null for text-only rows)                             |
 * | num_frames    | Int32: sampled frames (0 for text-only rows)                            |
 * | frame_times   | List<Float64>: seconds of each sampled frame, increasing                |
 * | frames        | List<Float16 or Float32>: features flattened [num_frames, tokensPerFrame, featureDim] |
 * | dialogues     | List<Struct<dialogue_id: Utf8, turns: List<Struct<speaker: Utf8, text: Utf8>>>> |
 *
 * A turn whose `speaker` equals the row's `role` is the role speaking.
 */

/** Version of the shard layout and index; bumped on any incompatible change. */
export const SHARD_FORMAT_VERSION = 1;
/** Value of `format` in every index.json. */
export const SHARD_FORMAT_NAME = 'rpv-shards';

export const SHARD_COLUMNS = [
  'video_id',
  'source',
  'role',
  'language',
  'platform',
  'profile',
  'summary',
  'duration_sec',
  'num_frames',
  'frame_times',
  'frames',
  'dialogues',
] as const;

export type FeatureDType = 'float16' | 'float32';
export type ShardFileFormat = 'arrow' | 'parquet';

export interface Turn {
  speaker: string;
  text: string;
}

export interface Dialogue {
  dialogue_id: string;
  turns: Turn[];
}

/** One shard row as plain values (the converter's output, a reader's decoded row). */
export interface VideoRow {
  video_id: string;
  source: string;
  role: string;
  language: string | null;
  platform: string | null;
  profile: string | null;
  summary: string | null;
  duration_sec: number | null;
  num_frames: number;
  frame_times: Float64Array;
  /** Flattened [num_frames, tokensPerFrame, featureDim], always float32 in memory. */
  frames: Float32Array;
  dialogues: Dialogue[];
}

/** What every row's `frames` column holds. */
export interface FeatureSchema {
  featureDim: number;
  tokensPerFrame: number;
  dtype: FeatureDType;
}

/** Settings of the adaptive temporal sampling (the paper's dynamic profile). */
export interface SamplingSettings {
  fps: number;
  minFrames: number;
  maxFrames: number;
  /** Frames are scaled to frameSize x frameSize before encoding. */
  frameSize: number;
}

export interface ShardEntry {
  /** File name relative to the index. */
  file: string;
  format: ShardFileFormat;
  rows: number;
  dialogues: number;
  bytes: number;
  sha256: string;
  /**
   * Shards of more than one block (see blocks.ts): rows per block (the last may be shorter) and
   * dialogues in each block. Absent: the shard is one block.
   */
  blockRows?: number;
  blockDialogues?: number[];
  /**
   * Shards of more than one block, written since block hashes exist (verify.ts): where each
   * block's bytes lie (blocks + 1 offsets), each block's sha256, and the sha256 of the bytes
   * outside the blocks. A reader of one block checks the bytes it reads against these. Absent: the
   * shard is checked whole against `sha256`.
   */
  blockOffsets?: number[];
  blockSha256?: string[];
  headTailSha256?: string;
}

export interface SkipRecord {
  /** Input file (relative to the export folder) or video path the skip concerns. */
  source: string;
  /** 1-based line in `source`, when the input is line-oriented. */
  line?: number;
  reason: string;
}

/** The dataset's `index.json`. */
export interface ShardIndex {
  format: typeof SHARD_FORMAT_NAME;
  version: number;
  created: string;
  schema: FeatureSchema & { columns: readonly string[] };
  sampling: SamplingSettings;
  encoder: { id: string; [key: string]: unknown };
  /** Every shard file; with `--format both` each row set appears once per format. */
  shards: ShardEntry[];
  totals: { rows: number; dialogues: number; frames: number; bytes: number; shards: number };
  /** Records read from the input = rows written + records skipped (+ merged into a video). */
  counts: { read: number; converted: number; skipped: number; [key: string]: number };
  skipped: SkipRecord[];
  [key: string]: unknown;
}
