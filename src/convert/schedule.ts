/**
 * The middle step of `convertExport`: turn the videos to convert into rows, `workers` ffmpeg
 * processes at a time, and hand the rows to the writer in input order.
 *
 * - Batches: a lane takes consecutive videos (up to `videosPerProcess`, and BATCH_MAX_SEC of video)
 *   and decodes them in one ffmpeg process (`finishBatch`). Batches are guided: a lane takes at
 *   most its share of the videos left, so they shrink towards the end and the last ones keep every
 *   worker busy.
 * - Lanes: twice as many as extraction slots, so a lane encoding its frames (on this thread) never
 *   holds up the next extraction. A lane takes a slot before choosing its batch and gives it back
 *   as soon as the frames are out.
 * - Probes run a batch ahead (`prepareGroup`), so an ffprobe's latency hides behind earlier work
 *   without starting many ffprobe processes at once.
 * - Order and memory: results wait in a window of at most `window` videos past the next one to
 *   write; rows go to the writer strictly in input order.
 * - Stopping: the signal, a failure, or (with `strict`) a skipped video stops every lane; what was
 *   written so far is reported (`written`) so the caller can keep finished shards for a resume.
 */
import { OutputArena } from '../media/spawn.js';
import type { SkipRecord, VideoRow } from '../shard/schema.js';
import type { VideoGroup } from './group.js';
import { strictError } from './read-records.js';
import { finishBatch, prepareGroup, type GroupContext, type Prepared } from './stages.js';

/** A batch stops growing at this much video: starting a process costs little next to decoding it. */
const BATCH_MAX_SEC = 120;
/** Bound on a batch's decoded frames in memory. */
const BATCH_MAX_BYTES = 256 * 1024 * 1024;

/** Videos per ffmpeg process by default: 8, fewer when 8 videos' frames would pass BATCH_MAX_BYTES. */
export function defaultVideosPerProcess(frameSize: number, maxFrames: number): number {
  return Math.max(1, Math.min(8, Math.floor(BATCH_MAX_BYTES / (maxFrames * frameSize * frameSize * 3))));
}

export interface ScheduleOptions {
  /** ffmpeg processes at once (the size of `ctx.extractSlots`). */
  workers: number;
  /** Most videos one ffmpeg process decodes. */
  videosPerProcess: number;
  /** Stop at the first video skipped (a media problem) with `strictError`. */
  strict: boolean;
  signal?: AbortSignal;
  /** Takes each row, in input order. */
  write: (row: VideoRow) => Promise<void>;
  /** After each video is written or skipped, in input order, with the count of media skips so far. */
  onDone: (mediaSkips: number) => void;
}

export interface ScheduleResult {
  /** Videos written or skipped, in input order: `todo[0 .. written)`. */
  written: number;
  /** The skips of each skipped video, by its position in `todo`. */
  mediaSkips: Map<number, SkipRecord[]>;
  /** The first error that stopped the lanes (null when none). */
  failure: unknown;
}

type Ready = Exclude<Prepared, { kind: 'error' }>;

/** Convert `todo` (see the module comment); never throws: a failure is returned. */
export function convertGroups(todo: readonly VideoGroup[], ctx: GroupContext, options: ScheduleOptions): Promise<ScheduleResult> {
  return new BatchScheduler(todo, ctx, options).run();
}

class BatchScheduler {
  private nextToStart = 0;
  private nextToWrite = 0;
  private failure: unknown = null;
  private readonly waiters: (() => void)[] = [];
  private readonly results = new Map<number, VideoRow | SkipRecord[]>();
  private readonly prepared = new Map<number, Promise<Prepared>>();
  private readonly mediaSkips = new Map<number, SkipRecord[]>();
  private mediaSkipCount = 0;
  private writing: Promise<void> = Promise.resolve();
  private readonly lanes: number;
  private readonly window: number;

  constructor(
    private readonly todo: readonly VideoGroup[],
    private readonly ctx: GroupContext,
    private readonly options: ScheduleOptions,
  ) {
    this.lanes = options.workers * 2;
    this.window = this.lanes * options.videosPerProcess * 2 + 8;
  }

  async run(): Promise<ScheduleResult> {
    const onAbort = () => this.wakeAll();
    this.options.signal?.addEventListener('abort', onAbort);
    try {
      await Promise.all(Array.from({ length: Math.min(this.lanes, Math.max(1, this.todo.length)) }, () => this.lane()));
      await this.writing;
      // Probes started ahead of an interrupt: let them settle (their ffprobe is killed by the signal).
      await Promise.all(this.prepared.values());
    } finally {
      this.options.signal?.removeEventListener('abort', onAbort);
    }
    return { written: this.nextToWrite, mediaSkips: this.mediaSkips, failure: this.failure };
  }

  private aborted(): boolean {
    return this.options.signal?.aborted === true || this.failure !== null;
  }

  private wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    this.wakeAll();
  }

  /** Start probing video `i` (once). */
  private prepare(i: number): void {
    if (i < this.todo.length && !this.prepared.has(i) && !this.aborted()) {
      this.prepared.set(i, prepareGroup(this.todo[i]!, this.ctx).catch((err: unknown): Prepared => ({ kind: 'error', err })));
    }
  }

  /** The most videos the next batch may take: `videosPerProcess`, or less, a lane's share of what is left. */
  private batchCap(): number {
    return Math.max(1, Math.min(this.options.videosPerProcess, Math.ceil((this.todo.length - this.nextToStart) / this.options.workers)));
  }

  /**
   * One lane: wait for room in the window, take an extraction slot, take a batch, extract it in one
   * ffmpeg process (giving the slot back once the frames are out), encode it and queue its rows.
   */
  private async lane(): Promise<void> {
    const arena = new OutputArena();
    const slots = this.ctx.extractSlots!;
    while (!this.aborted()) {
      // Room in the window first, holding no slot (the rows to write next may need one).
      while (this.nextToStart - this.nextToWrite >= this.window && !this.aborted()) await new Promise<void>((r) => this.waiters.push(r));
      if (this.aborted() || this.nextToStart >= this.todo.length) return;
      await slots.acquire();
      let held = true;
      const release = () => {
        if (held) {
          held = false;
          slots.release();
        }
      };
      let taken: number[];
      let batchResults: (VideoRow | SkipRecord[])[];
      try {
        let readies: Ready[];
        ({ taken, readies } = await this.takeBatch());
        if (taken.length === 0) {
          release();
          continue;
        }
        batchResults = await finishBatch(readies, this.ctx, arena, release);
      } catch (err) {
        release();
        if (this.options.signal?.aborted) return;
        this.fail(err);
        return;
      }
      release();
      if (!this.queue(taken, batchResults)) return;
      this.writing = this.writing.then(() => this.drain()).catch((err: unknown) => this.fail(err));
      await this.writing;
    }
  }

  /**
   * The next consecutive videos, probed: up to `batchCap()` videos and BATCH_MAX_SEC of video
   * (images and text-only rows do not count). A lane holding videos never waits for room: it may
   * hold the next one to write.
   */
  private async takeBatch(): Promise<{ taken: number[]; readies: Ready[] }> {
    const taken: number[] = [];
    const readies: Ready[] = [];
    let videos = 0;
    let seconds = 0;
    const cap = this.batchCap();
    while (taken.length === 0 || (videos < cap && seconds < BATCH_MAX_SEC)) {
      if (this.aborted() || this.nextToStart >= this.todo.length || this.nextToStart - this.nextToWrite >= this.window) break;
      const i = this.nextToStart++;
      taken.push(i);
      for (let k = i; k <= i + Math.max(this.options.workers, cap) && k < this.todo.length; k++) this.prepare(k);
      const ready = await this.prepared.get(i)!;
      this.prepared.delete(i);
      if (ready.kind === 'error') throw ready.err;
      readies.push(ready);
      if (ready.kind === 'video' && !ready.image) {
        videos++;
        seconds += ready.durationSec ?? 0;
      }
    }
    return { taken, readies };
  }

  /** Keep a batch's results for the writer; false (and the lanes stop) for a skip under `strict`. */
  private queue(taken: number[], batchResults: (VideoRow | SkipRecord[])[]): boolean {
    for (let b = 0; b < taken.length; b++) {
      const result = batchResults[b]!;
      if (Array.isArray(result) && this.options.strict) {
        this.fail(strictError(result[0]!));
        return false;
      }
      this.results.set(taken[b]!, result);
    }
    return true;
  }

  /** Hand the results that are next in input order to the writer. */
  private async drain(): Promise<void> {
    while (this.results.has(this.nextToWrite)) {
      const result = this.results.get(this.nextToWrite)!;
      this.results.delete(this.nextToWrite);
      if (Array.isArray(result)) {
        this.mediaSkips.set(this.nextToWrite, result);
        this.mediaSkipCount += result.length;
      } else {
        await this.options.write(result);
      }
      this.nextToWrite++;
      this.options.onDone(this.mediaSkipCount);
      this.wakeAll();
    }
  }
}
