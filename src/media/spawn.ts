/**
 * Running ffmpeg and ffprobe: `runBinary` (stdout collected), `runCapture` (stdout as text),
 * `runBinaryOutputs` (outputs written to unlinked files in an `OutputArena`, read back in one go).
 * Tools are started by the native addon's posix_spawn when it has one (no fork of this process;
 * see src/native/spawner.cc), else by child_process (`RPV_SPAWN=node` forces it);
 * `describeSpawn` says which, for `rpv env`. Every run is killed on abort.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadNativeAddon, type NativeAddon } from '../native/addon.js';
import { errorMessage, RpvError } from '../util/errors.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Spawn `bin` with `stdio` (stderr must be 'pipe') through child_process, collect stderr as text,
 * SIGKILL it on abort. Resolves when it has exited and its pipes closed.
 */
function runChild(
  bin: string,
  args: string[],
  stdio: import('node:child_process').StdioOptions,
  signal: AbortSignal | undefined,
): Promise<{ code: number | null; killedBy: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const child = spawn(bin, args, { stdio });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
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
  const { outputs, ...rest } = await runToFiles(bin, args, 1, 1, signal);
  return { ...rest, stdout: outputs[0]! };
}

/**
 * `runBinary` for a tool writing `count` outputs on file descriptors 3 .. 3 + count - 1 (stdout
 * unused), each collected as one buffer. The descriptors are anonymous files (created and
 * unlinked at once, in /dev/shm when there is one, else the temp folder), not pipes: the tool
 * writes at its own pace and each output is read back with one read into one buffer, instead of
 * in 64 KiB chunks joined at the end. Nothing is left on disk, whatever happens. With `arena` the
 * outputs are views into its buffer (valid until its next use).
 */
export async function runBinaryOutputs(
  bin: string,
  args: string[],
  count: number,
  signal?: AbortSignal,
  arena?: OutputArena,
): Promise<Omit<RunResult, 'stdout'> & { outputs: Buffer[] }> {
  return runToFiles(bin, args, 3, count, signal, arena);
}

/**
 * Runs `bin` with `count` anonymous files as its descriptors `first` .. `first + count - 1`
 * (1: stdout; 3: stdout unused) and reads them back once it has exited. Started by the addon's posix_spawn when
 * there is one (no fork of this large process; see src/native/spawner.cc), else by child_process.
 * Stderr is a file as well with the addon, a pipe without.
 */
async function runToFiles(
  bin: string,
  args: string[],
  first: 1 | 3,
  count: number,
  signal?: AbortSignal,
  arena?: OutputArena,
): Promise<Omit<RunResult, 'stdout'> & { outputs: Buffer[] }> {
  if (signal?.aborted) throw abortError(signal);
  const fds: number[] = [];
  const spawnFiles = nativeSpawn();
  try {
    for (let k = 0; k < count; k++) fds.push(anonymousFile());
    let result: { code: number | null; killedBy: NodeJS.Signals | null; stderr: string };
    if (spawnFiles) {
      const errFd = anonymousFile();
      fds.push(errFd);
      const stdio = first === 1 ? [-1, ...fds.slice(0, count), errFd] : [-1, -1, errFd, ...fds.slice(0, count)];
      const { code, killedBy } = await runSpawned(spawnFiles, bin, args, stdio, signal);
      result = { code, killedBy, stderr: readWhole(errFd, Buffer.allocUnsafe(fs.fstatSync(errFd).size)).toString('utf8') };
    } else {
      const stdio = first === 1 ? ['ignore', fds[0]!, 'pipe'] : ['ignore', 'ignore', 'pipe', ...fds];
      result = await runChild(bin, args, stdio as import('node:child_process').StdioOptions, signal);
    }
    const outFds = fds.slice(0, count);
    const sizes = outFds.map((fd) => fs.fstatSync(fd).size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const into = arena ? arena.take(total) : Buffer.allocUnsafeSlow(total);
    let at = 0;
    const outputs = outFds.map((fd, k) => {
      const view = readWhole(fd, into.subarray(at, at + sizes[k]!));
      at += sizes[k]!;
      return view;
    });
    return { code: result.code, signal: result.killedBy, outputs, stderr: result.stderr };
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

/** Reads file `fd` from its start into `into` (sized from fstat); the bytes read. */
function readWhole(fd: number, into: Buffer): Buffer {
  let done = 0;
  while (done < into.length) {
    const n = fs.readSync(fd, into, done, into.length - done, done);
    if (n === 0) break;
    done += n;
  }
  return into.subarray(0, done);
}

/** A new file opened for reading and writing and unlinked at once (in /dev/shm when it can be). */
function anonymousFile(): number {
  const name = path.join(scratchDir(), `.rpv-${process.pid}-${randomBytes(6).toString('hex')}.out`);
  const fd = fs.openSync(name, 'wx+', 0o600);
  fs.unlinkSync(name);
  return fd;
}

type SpawnFiles = NonNullable<NativeAddon['spawnFiles']>;
let addonSpawn: SpawnFiles | null | undefined;

/**
 * The addon's `spawnFiles` (Linux), unless RPV_SPAWN=node asks for Node's child_process (read
 * at each call; the addon is looked up once).
 */
export function nativeSpawn(): SpawnFiles | null {
  if (process.env.RPV_SPAWN === 'node') return null;
  if (addonSpawn === undefined) {
    const { addon } = loadNativeAddon();
    addonSpawn = addon?.spawnFiles?.bind(addon) ?? null;
  }
  return addonSpawn;
}

/** How tools are started here, for `rpv env`. */
export function describeSpawn(): string {
  if (nativeSpawn()) return 'posix_spawn (native addon; RPV_SPAWN=node for child_process)';
  if (process.env.RPV_SPAWN === 'node') return 'child_process (RPV_SPAWN=node)';
  const { addon, reason } = loadNativeAddon();
  return `child_process (${addon ? 'the addon has no posix_spawn on this platform' : reason})`;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(os.constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** `runChild` through the addon's posix_spawn: `stdio[i]` is the child's descriptor i. */
function runSpawned(
  spawnFiles: SpawnFiles,
  bin: string,
  args: string[],
  stdio: number[],
  signal: AbortSignal | undefined,
): Promise<{ code: number | null; killedBy: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    let exited = false;
    let pid = 0;
    // The child is not reaped before onExit runs, so its pid cannot have been reused.
    const onAbort = () => {
      if (!exited) process.kill(pid, 'SIGKILL');
    };
    try {
      pid = spawnFiles(bin, args, stdio, (code, sig) => {
        exited = true;
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) reject(abortError(signal));
        else resolve({ code: sig ? null : code, killedBy: sig ? (signalNames.get(sig) ?? 'SIGKILL') : null });
      });
    } catch (err) {
      return reject(new RpvError(`cannot run ${bin}: ${errorMessage(err)}`, { cause: err }));
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
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
