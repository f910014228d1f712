/**
 * Where every byte of a dataset comes from: its index and its shard files, from a local folder or
 * an http(s) URL. Remote shards go through the sha256-named cache (./cache.ts: downloaded once per
 * machine, checked against the index's size and sha256, retried); local shards and cache hits are
 * checked by size, and with `verify` (the default) by sha256: a shard read whole as its bytes are
 * read, a shard read by blocks block by block by its reader (../loader/block-read.ts, with the
 * entry's block hashes, ./verify.ts) or, for an entry without them, by one pass over the file
 * before its first block. The loader's workers (whole shards or one block at a time),
 * `scanDataset`, `inspectDataset` and `readShardIndex` all read through here, so a remote shard is
 * never downloaded twice or used unchecked; every other reader of a shard's rows (`rpv rate`'s
 * frames, `rpv generate --row`, the demo's showcase, `rpv merge`, the loader benchmark's
 * reference) takes them from `readShardRows`, checked the same way and failing with the same
 * message: `<who>: shard <path or URL>: block 2 of 3 (bytes A-B): sha256 mismatch: <what to do>`.
 */
import path from 'node:path';
import * as fs from './callback-fs.js';
import { defaultCacheDir, defaultCacheLimitBytes, ensureShardCached, fetchShardCached, sha256OfFile, type CachedFetchOptions } from './cache.js';
import { fetchWithRetry, type RetryOptions } from './fetch.js';
import type { ReadShardOptions } from './read.js';
import type { ShardFileFormat, VideoRow } from './schema.js';
import { RpvError } from '../util/errors.js';
import { blockHashesOf, LOCAL_ADVICE, ShardChecksumError, shardBytesProblem, type BlockHashes } from './verify.js';

/** How a dataset's shards are read: checked, and when remote, fetched and kept. */
export interface ShardReadOptions {
  /** Remote shards: cache folder (default $RPV_CACHE_DIR, else ~/.cache/rpv/shards). */
  cacheDir?: string;
  /** Remote shards: cache size limit (default $RPV_CACHE_LIMIT_BYTES, else 16 GiB). */
  cacheLimitBytes?: number;
  /** Retries of a remote download (attempts, backoff, timeout). */
  retry?: RetryOptions;
  /**
   * Hash local files and cache hits against the index (downloads are always hashed). Default
   * true; false reads them checked by size only.
   */
  verify?: boolean;
  /** Stop a download, or a wait for another downloader, as soon as this fires. */
  signal?: AbortSignal;
}

/** What the index says of a shard file: enough to find and check it. */
export interface ShardFileRef extends Partial<BlockHashes> {
  file: string;
  format: ShardFileFormat;
  bytes: number;
  sha256: string;
}

/** True for `http://` and `https://` sources. */
export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/**
 * The folder path or index URL that a dataset's shard files are relative to: an `index.json`
 * path gives its folder, an index URL is kept (shard names resolve against it), a folder URL
 * gets a trailing slash.
 */
export function datasetBase(dirOrUrl: string): string {
  if (isUrl(dirOrUrl)) {
    const url = new URL(dirOrUrl);
    if (!url.pathname.endsWith('.json') && !url.pathname.endsWith('/')) url.pathname += '/';
    return url.toString();
  }
  return dirOrUrl.endsWith('.json') ? path.dirname(dirOrUrl) : dirOrUrl;
}

/** Path or URL of shard file `file` of the dataset at `base` (see `datasetBase`). */
export function shardFileLocation(base: string, file: string): string {
  return isUrl(base) ? new URL(file, datasetBase(base)).href : path.join(datasetBase(base), file);
}

/**
 * The bytes of a small file of a dataset (its index): a local read, or a download with retries.
 * Throws naming the file; a local file that does not exist throws with code ENOENT.
 */
export async function readDatasetFile(where: string, retry: RetryOptions = {}): Promise<Uint8Array> {
  if (isUrl(where)) return fetchWithRetry(where, retry);
  return fs.readFile(where);
}

/**
 * A whole shard's bytes, checked against its index entry. `base` is the dataset's folder or index
 * URL. Remote: from the cache, downloaded into it when missing (`downloaded` says so). Errors:
 * `file not found: <path>`, `size N bytes, the index says M (file changed or truncated)`,
 * `block 2 of 3 (bytes A-B): sha256 mismatch: <what to do>` (`whole file (bytes 0-N)` for an
 * entry without block hashes), or the cache's download error.
 */
export async function readShardBytes(base: string, entry: ShardFileRef, options: ShardReadOptions = {}): Promise<{ bytes: Uint8Array; downloaded: boolean }> {
  return readShardAt(shardFileLocation(base, entry.file), entry, options);
}

/** As `readShardBytes`, for a shard at `where`: a path or the shard's own URL. */
export async function readShardAt(where: string, entry: Omit<ShardFileRef, 'file'>, options: ShardReadOptions = {}): Promise<{ bytes: Uint8Array; downloaded: boolean }> {
  if (isUrl(where)) return fetchShardCached(cacheOptions(where, entry, options));
  return { bytes: await readLocalShard(where, entry, options.verify ?? true), downloaded: false };
}

/** How `readShardRows` reads: checked as `readShardBytes`, decoded as `readShard`. */
export interface ShardRowsOptions extends ShardReadOptions {
  /** Who reads, the first word of its errors (`rate`, `generate`, `train`). */
  who: string;
  /** Decode only these columns (the others get empty values). */
  columns?: ReadShardOptions['columns'];
}

/**
 * The rows of one shard of the dataset at `base` (folder or index URL), its bytes read and checked
 * against the index entry as `readShardBytes` reads them (with `verify`, the default). A bad read
 * throws RpvError `<who>: shard <path or URL>: <problem>`, the loader's and the trainer's message
 * (e.g. `rate: shard data/shard-00001.arrow: block 2 of 3 (bytes 1048-2095): sha256 mismatch:
 * ...`); a file that passes but does not decode, `readShard`'s own.
 */
export async function readShardRows(base: string, entry: ShardFileRef, options: ShardRowsOptions): Promise<VideoRow[]> {
  const { who, columns, ...read } = options;
  const where = shardFileLocation(base, entry.file);
  let bytes: Uint8Array;
  try {
    ({ bytes } = await readShardBytes(base, entry, read));
  } catch (err) {
    throw new RpvError(`${who}: shard ${where}: ${(err as Error).message}`, { cause: err });
  }
  // Imported here: the loader's workers read bytes through this file and decode columns themselves.
  const { readShard } = await import('./read.js');
  return readShard(bytes, entry.format, { name: where, columns });
}

/**
 * Files this thread has hashed whole already (`verify` on blocks of an entry without block
 * hashes: once per file, not per block).
 */
const verifiedFiles = new Set<string>();

/**
 * A shard as a file on disk, for a reader that takes only some of its bytes (one block): a local
 * path checked by size, or the cache's file of a remote shard (downloaded when missing). With
 * `verify`, an entry with block hashes is left to the block reader (it hashes what it reads); one
 * without is hashed whole here, by chunks, once per file and thread. Errors as `readShardBytes`.
 */
export async function shardFileAt(where: string, entry: Omit<ShardFileRef, 'file'>, options: ShardReadOptions = {}): Promise<{ file: string; downloaded: boolean }> {
  const wholeCheck = (options.verify ?? true) && !blockHashesOf(entry);
  if (isUrl(where)) {
    const key = `${where}\0${entry.sha256}`;
    const got = await ensureShardCached({ ...cacheOptions(where, entry, options), verify: wholeCheck && !verifiedFiles.has(key) });
    if (wholeCheck) verifiedFiles.add(key);
    return got;
  }
  let size: number;
  try {
    size = (await fs.stat(where)).size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `file not found: ${where}` : (err as Error).message, { cause: err });
  }
  if (size !== entry.bytes) throw new Error(`size ${size} bytes, the index says ${entry.bytes} (file changed or truncated)`);
  const key = `${where}\0${entry.sha256}`;
  if (wholeCheck && !verifiedFiles.has(key)) {
    if ((await sha256OfFile(where)) !== entry.sha256) throw new ShardChecksumError(`whole file (bytes 0-${size - 1}): sha256 mismatch: ${LOCAL_ADVICE}`);
    verifiedFiles.add(key);
  }
  return { file: where, downloaded: false };
}

function cacheOptions(url: string, entry: Omit<ShardFileRef, 'file'>, options: ShardReadOptions): CachedFetchOptions {
  return {
    url,
    sha256: entry.sha256,
    bytes: entry.bytes,
    ext: entry.format === 'parquet' ? '.parquet' : '.arrow',
    cacheDir: options.cacheDir ?? defaultCacheDir(),
    limitBytes: options.cacheLimitBytes ?? defaultCacheLimitBytes(),
    verify: options.verify ?? true,
    blocks: blockHashesOf(entry),
    ...options.retry,
    signal: options.signal,
  };
}

/** A local shard file, checked by size (and sha256 with `verify`); errors as `readShardBytes`. */
async function readLocalShard(file: string, entry: Omit<ShardFileRef, 'file' | 'format'>, verify: boolean): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `file not found: ${file}` : (err as Error).message, { cause: err });
  }
  if (bytes.byteLength !== entry.bytes) {
    throw new Error(`size ${bytes.byteLength} bytes, the index says ${entry.bytes} (file changed or truncated)`);
  }
  const problem = verify ? shardBytesProblem(bytes, entry) : undefined;
  if (problem) throw new ShardChecksumError(problem);
  return bytes;
}
