/**
 * Opening a dataset for the loader: its index (local or remote, with retries, read by
 * ../shard/index-file.ts), the shards of the chosen format, and what the loader derives from
 * them (sizes, fingerprint, memory estimates).
 */
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import type { ShardEntry, ShardFileFormat, ShardIndex } from '../shard/schema.js';
import { indexLocation, isUrl, readShardIndex, shardsOfFormat } from '../shard/index-file.js';
import type { RetryOptions } from '../shard/fetch.js';
import { datasetFingerprint } from './state.js';
import { shardBlocks, type ShardBlocks } from '../shard/blocks.js';

export interface Dataset {
  index: ShardIndex;
  shards: ShardEntry[];
  format: ShardFileFormat;
  /** Folder path or index URL that shard files are relative to. */
  base: string;
  remote: boolean;
  /** Floats per frame: tokensPerFrame * featureDim. */
  floatsPerFrame: number;
  fingerprint: string;
  sizes: number[];
  /** Each shard's blocks (one when its index entry lists none). */
  blocks: ShardBlocks[];
}

export async function openDataset(options: { source: string; format?: ShardFileFormat; retry?: RetryOptions }): Promise<Dataset> {
  const where = indexLocation(options.source);
  const remote = isUrl(where);
  const index = await readShardIndex(where, { retry: options.retry });
  const available = new Set(index.shards.map((s) => s.format));
  const format = options.format ?? (available.has('arrow') || available.size === 0 ? 'arrow' : 'parquet');
  const shards = shardsOfFormat(index, format);
  if (shards.length === 0) {
    throw new RpvError(`loader: ${where}: no ${format} shards in the index (it lists: ${[...available].join(', ') || 'none'})`);
  }
  return {
    index,
    shards,
    format,
    base: remote ? where : path.dirname(where),
    remote,
    floatsPerFrame: index.schema.tokensPerFrame * index.schema.featureDim,
    fingerprint: datasetFingerprint(shards),
    sizes: shards.map((s) => s.dialogues),
    blocks: shards.map(shardBlocks),
  };
}

/** Decoded size of a shard before it is read: its features as float32 plus its text. */
export function estimateDecodedBytes(ds: Dataset, shard: number): number {
  const entry = ds.shards[shard]!;
  const totals = ds.index.totals;
  const frames = totals.rows > 0 ? (totals.frames * entry.rows) / totals.rows : 0;
  const featureBytes = frames * ds.floatsPerFrame * 4;
  const onDiskFeatures = frames * ds.floatsPerFrame * (ds.index.schema.dtype === 'float16' ? 2 : 4);
  const other = entry.format === 'arrow' ? Math.max(0, entry.bytes - onDiskFeatures) * 2 : entry.bytes * 2;
  return Math.ceil(featureBytes + frames * 8 + other);
}

/**
 * What loading block `block` of `shard` holds at most, before it is read: its share (by rows) of
 * the shard's decoded size, plus, for a shard of several blocks, its share of the file's bytes,
 * which the worker holds beside the decoded columns until they are handed over.
 */
export function estimateBlockBytes(ds: Dataset, shard: number, block: number): number {
  const entry = ds.shards[shard]!;
  const blocks = ds.blocks[shard]!;
  if (blocks.count === 1) return estimateDecodedBytes(ds, shard);
  const share = entry.rows > 0 ? blocks.rows[block]! / entry.rows : 0;
  return Math.ceil((estimateDecodedBytes(ds, shard) + entry.bytes) * share);
}
