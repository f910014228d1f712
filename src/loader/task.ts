/**
 * One unit of background work: get a shard's bytes, or one block of them (read by
 * ../shard/source.ts: a local file, or a remote one through the cache; checked against the
 * index), and decode them. Runs inside a worker thread, or in-process when the loader has
 * `workers: 0`.
 */
import type { ShardFileFormat } from '../shard/schema.js';
import { decodeShardColumns, decodeTable, shardBuffers, type DecodedShard } from './decode.js';
import { readShardAt, shardFileAt, type ShardReadOptions } from '../shard/source.js';
import { readBlock } from './block-read.js';
import { throwIfAborted, type RetryOptions } from '../shard/fetch.js';
import { blockCheckOf, ShardChecksumError, type BlockHashes } from '../shard/verify.js';
import * as fs from '../shard/callback-fs.js';

export interface LoadTask {
  /** Shard file name as in the index (for messages). */
  name: string;
  format: ShardFileFormat;
  /** tokensPerFrame * featureDim. */
  floatsPerFrame: number;
  /** Expected size and sha256 from the index, and its block hashes when it lists them. */
  bytes: number;
  sha256: string;
  blockHashes?: BlockHashes;
  /** Local path, or undefined for a remote shard. */
  file?: string;
  remote?: { url: string; cacheDir: string; limitBytes: number; retry: RetryOptions };
  /** Hash local files and cache hits (downloads are always hashed). */
  verify: boolean;
  /**
   * Read only this block of a shard of several blocks (src/shard/blocks.ts): the file's other
   * bytes are never held. Absent: the whole file, decoded at once. With `verify`, the block's
   * bytes are checked against `blockHashes` as they are read (an entry without block hashes is
   * hashed whole once per thread instead).
   */
  block?: { index: number; count: number };
}

export interface LoadResult {
  shard: DecodedShard;
  /** The shard came over the network (not from the cache or a local folder). */
  downloaded: boolean;
}

/**
 * `signal` asks the task to stop: a download or a wait for another downloader ends at once, other
 * steps at their next boundary; it then rejects with an AbortedError (nothing left in the cache).
 */
export async function runLoadTask(task: LoadTask, signal?: AbortSignal): Promise<LoadResult> {
  throwIfAborted(signal);
  if (task.block && task.block.count > 1) return runBlockTask(task, task.block, signal);
  const { bytes, downloaded } = await readShardAt(whereOf(task), refOf(task), readOptions(task, signal));
  throwIfAborted(signal);
  const shard = await decodeShardColumns(bytes, { name: task.name, format: task.format, floatsPerFrame: task.floatsPerFrame });
  return { shard, downloaded };
}

/** What the index says of the task's shard, block hashes included. */
function refOf(task: LoadTask) {
  return { format: task.format, bytes: task.bytes, sha256: task.sha256, ...task.blockHashes };
}

/** The shard's path, or its URL. */
function whereOf(task: LoadTask): string {
  return task.remote?.url ?? task.file!;
}

function readOptions(task: LoadTask, signal: AbortSignal | undefined): ShardReadOptions {
  const { remote } = task;
  return { cacheDir: remote?.cacheDir, cacheLimitBytes: remote?.limitBytes, retry: remote?.retry, verify: task.verify, signal };
}

/** Buffers of a result that can be moved to another thread without copying. */
export function transferList(result: LoadResult): ArrayBuffer[] {
  return shardBuffers(result.shard);
}

async function runBlockTask(task: LoadTask, block: NonNullable<LoadTask['block']>, signal?: AbortSignal): Promise<LoadResult> {
  const check = task.verify && task.blockHashes ? blockCheckOf(task.blockHashes, block.index) : undefined;
  const options = readOptions(task, signal);
  // With block hashes the file needs no whole pass first: the block is checked as it is read.
  let { file, downloaded } = await shardFileAt(whereOf(task), refOf(task), options);
  throwIfAborted(signal);
  let table;
  for (let attempt = 1; ; attempt++) {
    try {
      ({ table } = await readBlock(file, task.format, task.bytes, block.index, block.count, check));
      break;
    } catch (err) {
      // A cached remote shard evicted meanwhile (another download over the cache limit), or
      // damaged in the cache since it was downloaded (the download was checked): fetch it again, once.
      const evicted = (err as NodeJS.ErrnoException).code === 'ENOENT';
      if ((evicted || err instanceof ShardChecksumError) && task.remote && attempt === 1) {
        if (!evicted) await fs.rm(file, { force: true });
        const again = await shardFileAt(whereOf(task), refOf(task), options);
        file = again.file;
        downloaded ||= again.downloaded;
        continue;
      }
      const message = (err as Error).message;
      if (evicted) throw new Error(`file not found: ${file}`, { cause: err });
      if (err instanceof ShardChecksumError || message.startsWith('holds ')) throw err;
      throw new Error(`block ${block.index + 1} of ${block.count}: corrupt ${task.format} shard: ${message}`, { cause: err });
    }
  }
  throwIfAborted(signal);
  return { shard: decodeTable(table, { name: task.name, floatsPerFrame: task.floatsPerFrame }), downloaded };
}
