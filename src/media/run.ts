import { spawn } from 'node:child_process';
import { RpvError } from '../util/errors.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Spawn a tool (ffmpeg, ffprobe), collect stdout as bytes and stderr as text; SIGKILL it on abort. */
export function runBinary(bin: string, args: string[], signal?: AbortSignal): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const onAbort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new RpvError(`cannot run ${bin}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, killedBy) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(abortError(signal));
      else resolve({ code, signal: killedBy, stdout: Buffer.concat(chunks), stderr });
    });
  });
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
