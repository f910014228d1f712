/**
 * The local cache of remote shards: one file per shard named by its sha256, so a shard is
 * downloaded once per machine whatever the number of workers, ranks or datasets sharing it.
 *
 * - Once per machine: a downloader holds `<name>.lock` (created with O_EXCL, holding its pid and
 *   thread id); others wait for the file to appear. A lock whose process is gone, or untouched
 *   for `staleLockMs`, is taken over; the pool removes the locks of a worker thread it stops
 *   mid-download (`releaseAbandonedDownload`).
 * - Integrity: the body is checked against the index's sha256 and size before it is written
 *   (temp file + rename), so the cache never holds a partial or corrupt shard under its name;
 *   a body that fails is named by its first bad block when the entry has block hashes.
 *   A cache hit is checked by size; `verify` re-hashes it as well (a hit read by blocks is
 *   checked block by block by its reader instead, ../loader/block-read.ts).
 * - Size limit: after each download, least recently used files (by mtime, touched on every hit)
 *   are removed until the cache fits `limitBytes`; the file just fetched is never removed.
 * - Stopping: `signal` ends a download or a wait at once (AbortedError); the lock is removed on
 *   the way out, so a worker asked to stop leaves nothing behind and exits on its own.
 *
 * File calls go through ./callback-fs.js (callback API), never `fs/promises`: see there why.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import os from 'node:os';
import { threadId } from 'node:worker_threads';
import { tempPathFor } from '../util/atomic.js';
import { processAlive } from '../util/process.js';
import * as fs from './callback-fs.js';
import { fetchWithRetry, sleep, throwIfAborted, type RetryOptions } from './fetch.js';
import { REMOTE_ADVICE, sha256Hex, shardBytesProblem, type BlockHashes } from './verify.js';

export interface CachedFetchOptions extends RetryOptions {
  url: string;
  sha256: string;
  bytes: number;
  /** File extension kept in the cache name (`.arrow`, `.parquet`). */
  ext: string;
  cacheDir: string;
  limitBytes: number;
  /** Re-hash a cache hit. */
  verify?: boolean;
  /** The entry's block hashes, when it has them: a body that fails its sha256 is reported by block. */
  blocks?: BlockHashes;
  staleLockMs?: number;
  /** Stop (the download, a wait for another downloader) as soon as this fires. */
  signal?: AbortSignal;
}

/** A lock file still empty after this long was left by a downloader stopped before writing its owner. */
const EMPTY_LOCK_STALE_MS = 10_000;

/** Default cache folder: $RPV_CACHE_DIR, else $XDG_CACHE_HOME/rpv/shards, else ~/.cache/rpv/shards. */
export function defaultCacheDir(): string {
  if (process.env.RPV_CACHE_DIR) return process.env.RPV_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'rpv', 'shards');
}

/** Default size limit of the cache (least recently used files evicted beyond it): 16 GiB. */
export const DEFAULT_CACHE_LIMIT_BYTES = 16 * 1024 ** 3;

/**
 * The cache size limit when the caller sets none: $RPV_CACHE_LIMIT_BYTES (whole bytes), else
 * DEFAULT_CACHE_LIMIT_BYTES. For the commands (`rpv train`, `rpv eval`, `rpv inspect`), which
 * have no option of their own for it.
 */
export function defaultCacheLimitBytes(): number {
  const text = process.env.RPV_CACHE_LIMIT_BYTES;
  if (text === undefined || text === '') return DEFAULT_CACHE_LIMIT_BYTES;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`RPV_CACHE_LIMIT_BYTES: expected a whole number of bytes > 0, found ${JSON.stringify(text)}`);
  return value;
}

export { sha256Hex };

/** A shard's bytes, from the cache or downloaded into it. */
export async function fetchShardCached(options: CachedFetchOptions): Promise<{ bytes: Uint8Array; downloaded: boolean }> {
  return cached(options, (file) => readHit(file, options), (_file, bytes) => bytes).then(({ value, downloaded }) => ({ bytes: value, downloaded }));
}

/**
 * A shard's file in the cache (downloaded into it when missing), for a reader that takes only
 * some of its bytes (one block): a hit is checked by size (`verify`: re-hashed, by chunks) and
 * never read whole.
 */
export async function ensureShardCached(options: CachedFetchOptions): Promise<{ file: string; downloaded: boolean }> {
  return cached(options, (file) => statHit(file, options), (file) => file).then(({ value, downloaded }) => ({ file: value, downloaded }));
}

async function cached<T>(
  options: CachedFetchOptions,
  hitOf: (file: string) => Promise<T | undefined>,
  fromDownload: (file: string, bytes: Uint8Array) => T,
): Promise<{ value: T; downloaded: boolean }> {
  const { cacheDir, sha256, ext, staleLockMs = 120_000, signal } = options;
  await fs.mkdir(cacheDir, { recursive: true });
  const file = path.join(cacheDir, `${sha256}${ext}`);
  const lock = `${file}.lock`;
  for (;;) {
    throwIfAborted(signal);
    const hit = await hitOf(file);
    if (hit !== undefined) return { value: hit, downloaded: false };
    let fd: number | undefined;
    try {
      fd = await fs.open(lock, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (fd === undefined) {
      // Someone else is downloading it: wait for the file, or take over a dead lock.
      await waitForOther(file, lock, staleLockMs, signal);
      continue;
    }
    try {
      try {
        await fs.writeAll(fd, Buffer.from(lockOwner(threadId)));
      } finally {
        await fs.close(fd);
      }
      throwIfAborted(signal);
      // It may have landed between our miss and our lock.
      const late = await hitOf(file);
      if (late !== undefined) return { value: late, downloaded: false };
      // Keep the lock fresh during a long download so no one takes it over as stale.
      const keepAlive = setInterval(() => {
        const now = new Date();
        fs.utimes(lock, now, now).catch(() => undefined);
      }, Math.max(1000, staleLockMs / 4));
      keepAlive.unref();
      let bytes: Uint8Array;
      try {
        bytes = await download(options);
      } finally {
        clearInterval(keepAlive);
      }
      await writeCacheFile(file, bytes);
      await evictLeastRecentlyUsed(cacheDir, options.limitBytes, new Set([path.basename(file)]));
      return { value: fromDownload(file, bytes), downloaded: true };
    } finally {
      await fs.rm(lock, { force: true });
    }
  }
}

async function readHit(file: string, { bytes: size, sha256, verify, blocks }: CachedFetchOptions): Promise<Uint8Array | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (bytes.byteLength !== size || (verify && shardBytesProblem(bytes, { bytes: size, sha256, ...blocks }) !== undefined)) {
    await fs.rm(file, { force: true });
    return undefined;
  }
  const now = new Date();
  await fs.utimes(file, now, now).catch(() => undefined);
  return bytes;
}

async function statHit(file: string, { bytes: size, sha256, verify }: CachedFetchOptions): Promise<string | undefined> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (st.size !== size || (verify && (await sha256OfFile(file)) !== sha256)) {
    await fs.rm(file, { force: true });
    return undefined;
  }
  const now = new Date();
  await fs.utimes(file, now, now).catch(() => undefined);
  return file;
}

/** sha256 of a file read in 8 MiB chunks (never held whole). */
export async function sha256OfFile(file: string): Promise<string> {
  const h = createHash('sha256');
  const fd = await fs.open(file, 'r');
  try {
    const chunk = new Uint8Array(8 * 1024 * 1024);
    for (let position = 0; ; ) {
      const { bytesRead } = await fs.read(fd, chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      h.update(chunk.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await fs.close(fd);
  }
  return h.digest('hex');
}

/** `file` = `bytes`, through a temp file beside it + fsync + rename (as util/atomic's writeFileAtomic). */
async function writeCacheFile(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = tempPathFor(file);
  try {
    const fd = await fs.open(tmp, 'wx');
    try {
      await fs.writeAll(fd, bytes);
      await fs.fsync(fd);
    } finally {
      await fs.close(fd);
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

async function download(options: CachedFetchOptions): Promise<Uint8Array> {
  return fetchWithRetry(options.url, options, (body) => {
    if (body.byteLength !== options.bytes) {
      return `GET ${options.url}: got ${body.byteLength} bytes, the index says ${options.bytes}`;
    }
    const problem = shardBytesProblem(body, { bytes: options.bytes, sha256: options.sha256, ...options.blocks }, REMOTE_ADVICE);
    return problem === undefined ? undefined : `GET ${options.url}: ${problem}`;
  });
}

async function waitForOther(file: string, lock: string, staleLockMs: number, signal: AbortSignal | undefined): Promise<void> {
  for (;;) {
    await sleep(25, signal);
    let stat;
    try {
      stat = await fs.stat(lock);
    } catch {
      return; // lock gone: the file is there or the other downloader gave up; look again
    }
    if (await fileExists(file)) return;
    const owner = await fs.readFile(lock, 'utf8').catch(() => '');
    const pid = Number(owner.split(':')[0]);
    const dead = Number.isInteger(pid) && pid > 0 && !processAlive(pid);
    const age = Date.now() - stat.mtimeMs;
    if (dead || age > staleLockMs || (owner === '' && age > EMPTY_LOCK_STALE_MS)) {
      await fs.rm(lock, { force: true });
      return;
    }
  }
}


async function fileExists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** Remove least recently used cache files until the folder's files fit `limitBytes`. */
export async function evictLeastRecentlyUsed(cacheDir: string, limitBytes: number, keep: Set<string>): Promise<string[]> {
  const entries = await fs.readdir(cacheDir);
  const files: { name: string; size: number; mtimeMs: number }[] = [];
  for (const name of entries) {
    if (name.endsWith('.lock') || name.endsWith('.tmp')) continue;
    try {
      const st = await fs.stat(path.join(cacheDir, name));
      if (st.isFile()) files.push({ name, size: st.size, mtimeMs: st.mtimeMs });
    } catch {
      // removed meanwhile by another worker
    }
  }
  let total = files.reduce((sum, f) => sum + f.size, 0);
  files.sort((a, b) => a.mtimeMs - b.mtimeMs);
  const removed: string[] = [];
  for (const f of files) {
    if (total <= limitBytes) break;
    if (keep.has(f.name) || (await fileExists(path.join(cacheDir, `${f.name}.lock`)))) continue;
    await fs.rm(path.join(cacheDir, f.name), { force: true });
    total -= f.size;
    removed.push(f.name);
  }
  return removed;
}

/** Content of a lock file: who holds it. */
export function lockOwner(thread: number): string {
  return `${process.pid}:${thread}\n`;
}

/**
 * After worker thread `thread` of this process was stopped mid-download, remove its lock on the
 * shard and its half-written temp file, so no one waits for a download that will never finish.
 */
export async function releaseAbandonedDownload(cacheDir: string, sha256: string, ext: string, thread: number): Promise<void> {
  const name = `${sha256}${ext}`;
  const lock = path.join(cacheDir, `${name}.lock`);
  const owner = await fs.readFile(lock, 'utf8').catch(() => '');
  if (owner === lockOwner(thread)) await fs.rm(lock, { force: true });
  const prefix = `.${name}.${process.pid}.`;
  for (const entry of await fs.readdir(cacheDir).catch(() => [] as string[])) {
    if (entry.startsWith(prefix) && entry.endsWith('.tmp')) await fs.rm(path.join(cacheDir, entry), { force: true });
  }
}
