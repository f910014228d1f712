/**
 * rpv's public API. An explicit list of named exports, one block per stage of the pipeline;
 * the CLI (`src/cli.ts`) is a thin layer over these.
 */
export { RpvError } from './util/errors.js';
export { Progress } from './util/progress.js';

// Shards: schema and index types
export { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION } from './shard/schema.js';
export type {
  Dialogue,
  FeatureDType,
  FeatureSchema,
  SamplingSettings,
  ShardEntry,
  ShardFileFormat,
  ShardIndex,
  SkipRecord,
  Turn,
  VideoRow,
} from './shard/schema.js';

// Media: ffmpeg, sampling, frame extraction

// Features: encoders

// Convert: input formats, converter, merge, inspect

// Loader

// Model

// Native matmul

// Train

// Eval
