/**
 * The file calls of shard reads that may run in the loader's worker threads (the cache, block reads),
 * as promises over Node's callback API instead of `fs/promises`.
 *
 * Why: on Node 20 an `fs/promises` call made while its worker thread is being terminated can
 * abort the whole process. `fs/promises` allocates its request (a promise) in C++; on a
 * terminating isolate that allocation fails and the binding falls through to its synchronous
 * branch, which asserts on the argument count (`OpenFileHandle ... Assertion failed: (argc) == (5)`
 * for `open`, which `readFile`, `writeFile` and every FileHandle go through). The callback API
 * creates its request object in JavaScript before calling into C++, so it has no such path.
 * The pool does not terminate busy workers (see loader/pool.ts); this keeps the last-resort
 * `terminate()` safe as well.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';

export const readFile = promisify(fs.readFile);
export const writeFile = promisify(fs.writeFile);
export const open = promisify(fs.open);
export const close = promisify(fs.close);
export const write = promisify(fs.write);
export const read = promisify(fs.read);
export const fsync = promisify(fs.fsync);
export const rename = promisify(fs.rename);
export const rm = promisify(fs.rm);
export const stat = promisify(fs.stat);
export const utimes = promisify(fs.utimes);
export const mkdir = promisify(fs.mkdir);
export const readdir = promisify(fs.readdir);
export const access = promisify(fs.access);

/** Write all of `data` at the start of file descriptor `fd`. */
export async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const { bytesWritten } = await write(fd, data, off, data.byteLength - off, off);
    off += bytesWritten;
  }
}
