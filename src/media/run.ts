import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RpvError } from '../util/errors.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Spawn `bin` with `stdio` (stderr must be 'pipe'), collect stderr as text, SIGKILL it on abort;
 * `onChild` attaches any other collectors. Resolves when it has exited and its pipes closed.
 */
function runChild(
  bin: string,
  args: string[],
  stdio: import('node:child_process').StdioOptions,
  signal: AbortSignal | undefined,
  onChild: (child: import('node:child_process').ChildProcess) => void = () => {},
): Promise<{ code: number | null; killedBy: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const child = spawn(bin, args, { stdio });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    onChild(child);
    const onAbort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new RpvError(`cannot run ${bin}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, killedBy) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(abortError(signal));
      else resolve({ code, killedBy, stderr });
    });
  });
}

/** Spawn a tool (ffmpeg, ffprobe), collect stdout as bytes and stderr as text; SIGKILL it on abort. */
export async function runBinary(bin: string, args: string[], signal?: AbortSignal): Promise<RunResult> {
  const chunks: Buffer[] = [];
  const { code, killedBy, stderr } = await runChild(bin, args, ['ignore', 'pipe', 'pipe'], signal, (child) => {
    child.stdout!.on('data', (b: Buffer) => chunks.push(b));
  });
  return { code, signal: killedBy, stdout: Buffer.concat(chunks), stderr };
}

/**
 * `runBinary` for a tool writing `count` outputs on file descriptors 3 .. 3 + count - 1 (stdout
 * unused), each collected as one buffer. The descriptors are anonymous files (created and
 * unlinked at once, in /dev/shm when there is one, else the temp folder), not pipes: the tool
 * writes at its own pace and each output is read back with one read into one buffer, instead of
 * in 64 KiB chunks joined at the end. Nothing is left on disk, whatever happens.
 */
export async function runBinaryOutputs(
  bin: string,
  args: string[],
  count: number,
  signal?: AbortSignal,
  arena?: OutputArena,
): Promise<Omit<RunResult, 'stdout'> & { outputs: Buffer[] }> {
  if (signal?.aborted) throw abortError(signal);
  const fds: number[] = [];
  try {
    const dir = scratchDir();
    for (let k = 0; k < count; k++) {
      const name = path.join(dir, `.rpv-${process.pid}-${randomBytes(6).toString('hex')}.out`);
      fds.push(fs.openSync(name, 'wx+', 0o600));
      fs.unlinkSync(name);
    }
    const { code, killedBy, stderr } = await runChild(bin, args, ['ignore', 'ignore', 'pipe', ...fds], signal);
    const sizes = fds.map((fd) => fs.fstatSync(fd).size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const into = arena ? arena.take(total) : Buffer.allocUnsafeSlow(total);
    let at = 0;
    const outputs = fds.map((fd, k) => {
      const size = sizes[k]!;
      let done = 0;
      while (done < size) {
        const n = fs.readSync(fd, into, at + done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      const view = into.subarray(at, at + done);
      at += size;
      return view;
    });
    return { code, signal: killedBy, outputs, stderr };
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

/**
 * One reusable buffer for `runBinaryOutputs`: each call's outputs are views into it, valid until
 * the next call with the same arena. Saves allocating (and the kernel zero-filling) fresh memory
 * for every batch of frames.
 */
export class OutputArena {
  private buf = Buffer.alloc(0);
  take(size: number): Buffer {
    if (this.buf.length < size) this.buf = Buffer.allocUnsafeSlow(Math.max(size, Math.ceil(this.buf.length * 1.5)));
    return this.buf;
  }
}

let scratch: string | undefined;
/** Where anonymous output files go: /dev/shm (memory) when writable, else the temp folder. */
function scratchDir(): string {
  if (scratch === undefined) {
    try {
      fs.accessSync('/dev/shm', fs.constants.W_OK);
      scratch = '/dev/shm';
    } catch {
      scratch = os.tmpdir();
    }
  }
  return scratch;
}

/** The same with stdout decoded as UTF-8 text (ffprobe's JSON). */
export async function runCapture(bin: string, args: string[], signal?: AbortSignal): Promise<Omit<RunResult, 'stdout'> & { stdout: string }> {
  const result = await runBinary(bin, args, signal);
  return { ...result, stdout: result.stdout.toString('utf8') };
}

/** The signal's reason when it is an Error, else an `AbortError`. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('aborted');
  err.name = 'AbortError';
  return err;
}
