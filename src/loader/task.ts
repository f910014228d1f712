/**
 * One unit of background work: get a shard's bytes (local file, or remote through the cache),
 * check them against the index, decode them. Runs inside a worker thread, or in-process when
 * the loader has `workers: 0`.
 */
import * as fs from './callback-fs.js';
import type { ShardFileFormat } from '../shard/schema.js';
import { decodeShard, decodeTable, shardBuffers, type DecodedShard } from './decode.js';
import { ensureShardCached, fetchShardCached, sha256Hex, sha256OfFile } from './cache.js';
import { readBlock } from './block-read.js';
import { throwIfAborted, type RetryOptions } from './fetch.js';

export interface LoadTask {
  /** Shard file name as in the index (for messages). */
  name: string;
  format: ShardFileFormat;
  /** tokensPerFrame * featureDim. */
  frameSize: number;
  /** Expected size and sha256 from the index. */
  bytes: number;
  sha256: string;
  /** Local path, or undefined for a remote shard. */
  file?: string;
  remote?: { url: string; cacheDir: string; limitBytes: number; retry: RetryOptions };
  /** Hash local files and cache hits (downloads are always hashed). */
  verify: boolean;
  /**
   * Read only this block of a shard of several blocks (src/shard/blocks.ts): the file's other
   * bytes are never held. Absent: the whole file, decoded at once.
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
  let bytes: Uint8Array;
  let downloaded = false;
  if (task.remote) {
    const got = await fetchShardCached({
      url: task.remote.url,
      sha256: task.sha256,
      bytes: task.bytes,
      ext: task.format === 'parquet' ? '.parquet' : '.arrow',
      cacheDir: task.remote.cacheDir,
      limitBytes: task.remote.limitBytes,
      verify: task.verify,
      ...task.remote.retry,
      signal,
    });
    bytes = got.bytes;
    downloaded = got.downloaded;
  } else {
    try {
      bytes = await fs.readFile(task.file!);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(code === 'ENOENT' ? `file not found: ${task.file}` : (err as Error).message);
    }
    if (bytes.byteLength !== task.bytes) {
      throw new Error(`size ${bytes.byteLength} bytes, the index says ${task.bytes} (file changed or truncated)`);
    }
    if (task.verify) {
      const got = sha256Hex(bytes);
      if (got !== task.sha256) throw new Error(`sha256 mismatch: index says ${task.sha256}, file has ${got}`);
    }
  }
  throwIfAborted(signal);
  const shard = await decodeShard(bytes, { name: task.name, format: task.format, frameSize: task.frameSize });
  return { shard, downloaded };
}

/** Buffers of a result that can be moved to another thread without copying. */
export function transferList(result: LoadResult): ArrayBuffer[] {
  return shardBuffers(result.shard);
}

/** Files this thread has hashed whole already (`verify` with blocks: once per file, not per block). */
const verified = new Set<string>();

async function runBlockTask(task: LoadTask, block: { index: number; count: number }, signal?: AbortSignal): Promise<LoadResult> {
  let downloaded = false;
  const remoteFile = async (): Promise<string> => {
    const remote = task.remote!;
    const got = await ensureShardCached({
      url: remote.url,
      sha256: task.sha256,
      bytes: task.bytes,
      ext: task.format === 'parquet' ? '.parquet' : '.arrow',
      cacheDir: remote.cacheDir,
      limitBytes: remote.limitBytes,
      verify: task.verify,
      ...remote.retry,
      signal,
    });
    downloaded ||= got.downloaded;
    return got.file;
  };
  let file: string;
  if (task.remote) {
    file = await remoteFile();
  } else {
    file = task.file!;
    let size: number;
    try {
      size = (await fs.stat(file)).size;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(code === 'ENOENT' ? `file not found: ${file}` : (err as Error).message);
    }
    if (size !== task.bytes) throw new Error(`size ${size} bytes, the index says ${task.bytes} (file changed or truncated)`);
    const key = `${file}\0${task.sha256}`;
    if (task.verify && !verified.has(key)) {
      const got = await sha256OfFile(file);
      if (got !== task.sha256) throw new Error(`sha256 mismatch: index says ${task.sha256}, file has ${got}`);
      verified.add(key);
    }
  }
  throwIfAborted(signal);
  let table;
  for (let attempt = 1; ; attempt++) {
    try {
      ({ table } = await readBlock(file, task.format, task.bytes, block.index, block.count));
      break;
    } catch (err) {
      // A cached remote shard evicted meanwhile (another download over the cache limit): fetch it again, once.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && task.remote && attempt === 1) {
        file = await remoteFile();
        continue;
      }
      const message = (err as Error).message;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`file not found: ${file}`, { cause: err });
      throw new Error(message.startsWith('holds ') ? message : `block ${block.index + 1} of ${block.count}: corrupt ${task.format} shard: ${message}`, { cause: err });
    }
  }
  throwIfAborted(signal);
  return { shard: decodeTable(table, { name: task.name, frameSize: task.frameSize }), downloaded };
}
