/**
 * A fixed pool of worker threads that run load tasks (read + verify + decode one shard) and
 * transfer the decoded buffers back. Tasks run in submission order as workers free up.
 *
 * Robustness rules: every task's promise settles (a worker that crashes or exits fails its task
 * and the pool); idle workers are unref'd so an abandoned loader never keeps a process alive;
 * `close()` stops every worker and resolves once they have exited.
 *
 * Stopping never terminates a worker that is doing I/O. On Node 20, `worker.terminate()` while the
 * worker is inside an fs/promises call (or starts one during teardown) can abort the whole
 * process (`node::fs::OpenFileHandle ... Assertion failed: (argc) == (5)`). So `close()` posts
 * `{ stop: true }`: the worker aborts its tasks (fetch through an AbortSignal, waits and backoff
 * at once, file steps at their next boundary; locks are removed by the task itself), closes its
 * port when nothing is in flight and exits on its own. Only a worker that has not exited after
 * `stopTimeoutMs` (stuck, or an entry that ignores the message) is terminated, and its download
 * lock and temp files are then removed for it (`releaseAbandonedDownload`).
 *
 * The worker file is found beside this module: `worker.js` when running from built JavaScript
 * (dist/), else `worker.ts` loaded through tsx's ESM API (development and tests only; tsx is a
 * dev dependency and is never needed from dist/).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { runLoadTask, type LoadResult, type LoadTask } from './task.js';
import { releaseAbandonedDownload } from '../shard/cache.js';

interface Job {
  id: number;
  task: LoadTask;
  resolve: (r: LoadResult) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** The worker's thread id (worker.threadId reads -1 once it has exited). */
  thread: number;
  ready: boolean;
  job: Job | undefined;
  exited: boolean;
  /** Resolves when the thread has exited. */
  exit: Promise<void>;
}

export interface PoolOptions {
  /** How long close() waits for a worker to exit on its own before terminating it (default 30 s). */
  stopTimeoutMs?: number;
}

export const DEFAULT_STOP_TIMEOUT_MS = 30_000;

/** How to start the worker: the built .js beside this file, or the .ts source through tsx. */
export function workerEntry(): { target: URL | string; eval: boolean; kind: 'js' | 'ts' } {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return { target: js, eval: false, kind: 'js' };
  const ts = new URL('./worker.ts', import.meta.url);
  if (!existsSync(fileURLToPath(ts))) {
    throw new Error(`loader: worker entry not found beside ${fileURLToPath(import.meta.url)} (worker.js or worker.ts)`);
  }
  let tsxApi: string;
  try {
    const require = createRequire(import.meta.url);
    tsxApi = path.join(path.dirname(require.resolve('tsx/package.json')), 'dist/esm/api/index.mjs');
  } catch {
    throw new Error('loader: running from TypeScript source needs the dev dependency tsx to start workers (or build with tsc)');
  }
  const code = [
    `import(${JSON.stringify(pathToFileURL(tsxApi).href)})`,
    `.then((api) => { api.register(); return import(${JSON.stringify(ts.href)}); })`,
    `.catch((err) => { throw err; });`,
  ].join('');
  return { target: code, eval: true, kind: 'ts' };
}

let live = 0;

/** Worker threads of all pools in this process that have not exited (for tests and leak checks). */
export function liveWorkerThreads(): number {
  return live;
}

export class LoadPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private broken: Error | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private inProcessBusy = 0;
  /** workers: 0 — the task running on this thread, and how to stop it. */
  private inProcessJob: Job | undefined;
  private inProcessRun: Promise<unknown> | undefined;
  private readonly inProcessAbort = new AbortController();
  private readonly stopTimeoutMs: number;

  /**
   * `size` worker threads; 0 runs tasks on the calling thread (one at a time). `entry` overrides
   * the worker script (tests use it to start workers that crash).
   */
  constructor(
    readonly size: number,
    entry?: ReturnType<typeof workerEntry>,
    options: PoolOptions = {},
  ) {
    this.stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    if (size > 0) {
      entry ??= workerEntry();
      for (let i = 0; i < size; i++) this.slots.push(this.spawn(entry));
    }
  }

  run(task: LoadTask): Promise<LoadResult> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new Error('loader: worker pool is closed'));
    return new Promise<LoadResult>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, task, resolve, reject });
      this.pump();
    });
  }

  /** Tasks submitted and not finished. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.job).length + this.inProcessBusy;
  }

  /**
   * Fail queued and running tasks, stop every worker (see the top of this file) and resolve once
   * all have exited and no task runs on this thread. Every call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    const err = new Error('loader: closed');
    for (const job of this.queue.splice(0)) job.reject(err);
    this.inProcessJob?.reject(err);
    this.inProcessAbort.abort();
    await Promise.all([...this.slots.map((slot) => this.stopSlot(slot, err)), this.inProcessRun?.catch(() => undefined)]);
  }

  private async stopSlot(slot: Slot, err: Error): Promise<void> {
    const job = slot.job;
    slot.job = undefined;
    job?.reject(err);
    if (slot.exited) return;
    // Keep the process up until the thread is gone (close() is awaited), then let it exit.
    slot.worker.ref();
    slot.worker.postMessage({ stop: true });
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      slot.exit.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (exited) return;
    // Last resort: a worker that does not stop on request. Its file calls avoid fs/promises
    // (shard/callback-fs.ts), which keeps terminating it off the FileHandle assertion's path.
    await slot.worker.terminate();
    if (job) await abandon(job.task, slot.thread);
  }

  private spawn(entry: ReturnType<typeof workerEntry>): Slot {
    const worker = new Worker(entry.target, { eval: entry.eval });
    live++;
    let exited!: () => void;
    const exit = new Promise<void>((resolve) => {
      exited = resolve;
    });
    const slot: Slot = { worker, thread: worker.threadId, ready: false, job: undefined, exited: false, exit };
    worker.on('message', (message: { ready?: true; id?: number; result?: LoadResult; error?: string }) => {
      if (message.ready) {
        slot.ready = true;
        this.pump();
        return;
      }
      const job = slot.job;
      if (!job || job.id !== message.id) return;
      slot.job = undefined;
      if (message.error !== undefined) job.reject(new Error(message.error));
      else job.resolve(message.result!);
      this.pump();
    });
    worker.on('error', (err: unknown) => this.fail(slot, err instanceof Error ? err : new Error(String(err))));
    worker.on('exit', (code) => {
      live--;
      slot.exited = true;
      exited();
      if (!this.closed) this.fail(slot, new Error(`loader: worker thread exited with code ${code}`));
    });
    return slot;
  }

  private fail(slot: Slot, err: Error): void {
    if (this.closed) return;
    const error = new Error(`loader: worker thread failed: ${err.message}`);
    this.broken ??= error;
    const job = slot.job;
    slot.job = undefined;
    if (job) {
      job.reject(new Error(`${job.task.name}: ${error.message}`));
      void abandon(job.task, slot.thread);
    }
    for (const queued of this.queue.splice(0)) queued.reject(new Error(`${queued.task.name}: ${error.message}`));
    void this.close();
  }

  private pump(): void {
    if (this.closed) return;
    if (this.size === 0) {
      while (this.queue.length > 0 && this.inProcessBusy === 0) {
        const job = this.queue.shift()!;
        this.inProcessBusy++;
        this.inProcessJob = job;
        this.inProcessRun = runLoadTask(job.task, this.inProcessAbort.signal)
          .then(job.resolve, (err: unknown) => job.reject(err instanceof Error ? err : new Error(String(err))))
          .finally(() => {
            this.inProcessBusy--;
            this.inProcessJob = undefined;
            this.inProcessRun = undefined;
            this.pump();
          });
      }
      return;
    }
    for (const slot of this.slots) {
      if (slot.ready && !slot.job && this.queue.length > 0) {
        slot.job = this.queue.shift()!;
        slot.worker.postMessage({ id: slot.job.id, task: slot.job.task });
      }
      // A busy worker keeps the process alive until its task settles; an idle one does not.
      if (slot.job || !slot.ready) slot.worker.ref();
      else slot.worker.unref();
    }
  }
}

/** Clean up after a task whose worker was stopped: a remote download leaves its lock and temp file. */
async function abandon(task: LoadTask, thread: number): Promise<void> {
  if (!task.remote) return;
  const ext = task.format === 'parquet' ? '.parquet' : '.arrow';
  await releaseAbandonedDownload(task.remote.cacheDir, task.sha256, ext, thread).catch(() => undefined);
}
