/**
 * `convertExport`: raw export -> shards + index.json.
 *
 *   read records (format auto-detected) -> check -> keep this --part -> group by video
 *   -> per video: path check, probe, adaptive sampling; then batches of consecutive videos,
 *      `workers` ffmpeg processes at a time, each decoding its batch in one pass; encoding (or
 *      precomputed features)
 *   -> rows in input order -> ShardWriter (rotates at maxShardBytes, atomic files)
 *   -> journal after each shard (resume) -> index.json (atomic) at the end.
 *
 * Counts: `read` = records and unparseable items read; `converted` = records whose dialogues are
 * in a row; `skipped` = the rest, each with a reason; `read = converted + skipped`. Several
 * records may share a row (`grouped` = converted - rows).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { Semaphore } from '../util/semaphore.js';
import { OutputArena } from '../media/spawn.js';
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION } from '../shard/schema.js';
import type { FeatureDType, FeatureSchema, SamplingSettings, ShardFileFormat, ShardIndex, SkipRecord, VideoRow } from '../shard/schema.js';
import { DEFAULT_MAX_SHARD_BYTES, ShardWriter, type ParquetCompression } from '../shard/write.js';
import { writeShardIndex } from '../shard/index-file.js';
import type { SourceRecord } from './record.js';
import { detectInputFormat, getInputFormat, inputRoot } from './formats/index.js';
import { groupKeyOf, groupRecords, parsePart, partOfKey, skipCategory, type Part, type VideoGroup } from './group.js';
import { JOURNAL_FILE, writeJournal } from './journal.js';
import { inputFilesFingerprint, prepareOutput } from './output.js';
import { finishBatch, precomputedSchema, prepareGroup, type GroupContext, type Prepared } from './stages.js';

export type OutputFormat = ShardFileFormat | 'both';

export interface ConvertOptions {
  /** Export folder or file. */
  input: string;
  /** Output folder for shards and index.json. */
  out: string;
  /**
   * Folder media paths are relative to (and must stay inside). Default: the input folder, or the
   * folder of an input file. (InternVL's `root`, LLaMA-Factory's `media_dir`.)
   */
  mediaRoot?: string;
  /** Input format; auto-detected when absent. */
  inputFormat?: string;
  /** Shard file format(s). Default `arrow`. */
  format?: OutputFormat;
  /** On-disk feature dtype. Default `float16`. */
  dtype?: FeatureDType;
  /** Adaptive sampling: frames per second before clamping. Default 1. */
  fps?: number;
  /** Default 4. */
  minFrames?: number;
  /** Default 16. */
  maxFrames?: number;
  /** Frames are scaled to frameSize x frameSize before encoding. Default 224. */
  frameSize?: number;
  /** Encoder spec (`grid`, `grid:cells=8`, `tfjs:<folder>`). Default `grid`. */
  encoder?: string;
  /** tfjs backend of a `tfjs:` encoder (auto, tensorflow, webgpu, wasm, cpu). Default auto. */
  encoderBackend?: import('../model/backend.js').BackendName;
  /** Folder of precomputed features (`<video id>.npy|.safetensors`) used instead of an encoder. */
  features?: string;
  /** ffmpeg processes at once. Default: the number of cores. */
  workers?: number;
  /**
   * Videos decoded by one ffmpeg process (consecutive ones, up to 120 s of video in all); 1 gives
   * one process per video. Default 8, fewer when their frames would pass 256 MiB. Batches shrink
   * towards the end of a run (each takes at most its share of the videos left), so that the last
   * ones keep every worker busy.
   */
  batch?: number;
  /** Rotate shards before the rows' Arrow size would pass this. Default 64 MiB (in blocks of at most 16 MiB). */
  maxShardBytes?: number;
  /** Parquet compression. Default `zstd`. */
  compression?: ParquetCompression;
  /** `i/N` or {index, count}: convert only the records whose video hashes to part i of N. */
  part?: string | Part;
  /** Continue an interrupted conversion into the same `out`. */
  resume?: boolean;
  /** Replace a dataset already in `out`. */
  overwrite?: boolean;
  /** Stop at the first skipped record (RpvError, exit 1). */
  strict?: boolean;
  /** A missing media file: skip the record (default) or keep it as a text-only row. */
  missingMedia?: 'skip' | 'text-only';
  /** Draw a progress bar on stderr. Default false. */
  progress?: boolean;
  /** Abort (Ctrl-C): stop cleanly, leaving resumable state. */
  signal?: AbortSignal;
  /** One-line notes (resume decisions), e.g. to stderr. */
  log?: (line: string) => void;
}

export interface ConvertSummary {
  out: string;
  /** The index written (null when interrupted: nothing written but finished shards + journal). */
  index: ShardIndex | null;
  interrupted: boolean;
  inputFormat: string;
  counts: ShardIndex['counts'];
  /** Skips grouped by category (text before the reason's first colon). */
  skippedByReason: Record<string, number>;
  rows: number;
  dialogues: number;
  shards: number;
  bytes: number;
  /** Shards kept from an interrupted run. */
  resumedShards: number;
  /** Videos processed in this run (not counting resumed ones). */
  videosProcessed: number;
  elapsedSec: number;
}

const DEFAULT_FRAME_SIZE = 224;
/** A batch stops growing at this much video: starting a process costs little next to decoding it. */
const BATCH_MAX_SEC = 120;
/** Bound on a batch's decoded frames in memory. */
const BATCH_MAX_BYTES = 256 * 1024 * 1024;

/** Videos per ffmpeg process: 8, fewer when 8 videos' frames would pass BATCH_MAX_BYTES. */
function defaultBatch(frameSize: number, maxFrames: number): number {
  return Math.max(1, Math.min(8, Math.floor(BATCH_MAX_BYTES / (maxFrames * frameSize * frameSize * 3))));
}

/** Convert an export to shards; see the module comment. */
export async function convertExport(options: ConvertOptions): Promise<ConvertSummary> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const outputFormat = options.format ?? 'arrow';
  if (!['arrow', 'parquet', 'both'].includes(outputFormat)) throw new RpvError(`convert: --format must be arrow, parquet or both; got ${outputFormat}`);
  const formats: ShardFileFormat[] = outputFormat === 'both' ? ['arrow', 'parquet'] : [outputFormat];
  const dtype = options.dtype ?? 'float16';
  if (dtype !== 'float16' && dtype !== 'float32') throw new RpvError(`convert: --dtype must be float16 or float32; got ${String(dtype)}`);
  const workers = options.workers ?? os.availableParallelism();
  if (!(Number.isInteger(workers) && workers >= 1)) throw new RpvError(`convert: --workers must be an integer >= 1; got ${workers}`);
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShardBytes > 0)) throw new RpvError(`convert: --max-shard-bytes must be > 0; got ${maxShardBytes}`);
  const frameSize = options.frameSize ?? DEFAULT_FRAME_SIZE;
  if (!(Number.isInteger(frameSize) && frameSize >= 8 && frameSize <= 4096)) throw new RpvError(`convert: --frame-size must be an integer from 8 to 4096; got ${frameSize}`);
  const part = typeof options.part === 'string' ? parsePart(options.part) : (options.part ?? { index: 0, count: 1 });
  const { validateSampling } = await import('../media/sampling.js');
  const sampling = validateSampling({ fps: options.fps, minFrames: options.minFrames, maxFrames: options.maxFrames });
  const samplingSettings: SamplingSettings = { ...sampling, frameSize };
  const missingMedia = options.missingMedia ?? 'skip';

  // 1. Input format and records.
  const input = path.resolve(options.input);
  const format = options.inputFormat ? getInputFormat(options.inputFormat) : await detectInputFormat(input);
  const root = options.mediaRoot ? path.resolve(options.mediaRoot) : await inputRoot(input);
  if (options.mediaRoot && !(await fs.stat(root).then((st) => st.isDirectory()).catch(() => false))) {
    throw new RpvError(`convert: --media-root ${options.mediaRoot} is not a folder`);
  }
  const out = path.resolve(options.out);

  const fingerprint = {
    input,
    inputFiles: await inputFilesFingerprint(input, out),
    mediaRoot: root,
    inputFormat: format.name,
    format: outputFormat,
    dtype,
    sampling: samplingSettings,
    encoder: options.features ? null : (options.encoder ?? 'grid'),
    features: options.features ? path.resolve(options.features) : null,
    part: `${part.index}/${part.count}`,
    maxShardBytes,
    compression: options.compression ?? 'zstd',
    missingMedia,
  };

  // 2. Output folder: fresh, overwritten, or resumed.
  const journal = await prepareOutput(out, options, fingerprint, log);
  if (journal === 'complete') {
    const { readShardIndex } = await import('../shard/index-file.js');
    const index = await readShardIndex(out);
    log(`convert --resume: ${out} is already complete (index.json written); nothing to do`);
    return summaryOf(out, index, format.name, false, 0, 0, started);
  }

  const read = { items: 0 };
  let readInterrupted = false;
  const skipped: SkipRecord[] = [];
  const records: SourceRecord[] = [];
  const strictCheck = (skip: SkipRecord) => {
    if (options.strict) {
      throw new RpvError(`convert --strict: ${skip.source}${skip.line !== undefined ? ` line ${skip.line}` : ''}: ${skip.reason}`);
    }
  };
  for await (const item of format.read(input, { root, missingMedia } as { root: string })) {
    if (options.signal?.aborted) {
      readInterrupted = true; // nothing converted yet: resume starts over
      break;
    }
    if (item.kind === 'skip') {
      // Items without a video key (unparseable) are reported by part 0 only, so parts sum up.
      if (part.index !== 0) continue;
      read.items++;
      strictCheck(item.skip);
      skipped.push(item.skip);
    } else {
      if (partOfKey(groupKeyOf(item.record), part.count) !== part.index) continue;
      read.items++;
      records.push(item.record);
    }
  }
  const grouped = groupRecords(records);
  for (const skip of grouped.skips) {
    strictCheck(skip);
    skipped.push(skip);
  }
  const groups = grouped.groups;

  // 3. Encoder or precomputed features; the feature schema.
  let encoder: import('../features/encoder.js').FrameEncoder | null = null;
  let encoderInfo: { id: string; [key: string]: unknown };
  let schema: FeatureSchema;
  const featuresDir = options.features ? path.resolve(options.features) : null;
  if (featuresDir) {
    encoderInfo = { id: 'precomputed', kind: 'precomputed', folder: featuresDir };
    schema = journal.schema ?? (await precomputedSchema(groups, featuresDir, dtype));
  } else {
    const { createEncoder } = await import('../features/encoder.js');
    encoder = await createEncoder(options.encoder ?? 'grid', { backend: options.encoderBackend });
    encoderInfo = encoder.describe();
    schema = { featureDim: encoder.featureDim, tokensPerFrame: encoder.tokensPerFrame, dtype };
  }
  journal.encoder = encoderInfo;
  journal.schema = schema;

  // 4. Which groups are already in finished shards (resume).
  const done = new Set<string>();
  for (const shard of journal.shards) for (const id of shard.videoIds) done.add(id);
  const todo = groups.filter((g) => !done.has(g.videoId));
  const resumedShards = journal.shards.length;
  if (resumedShards > 0) log(`convert --resume: keeping ${resumedShards} finished shard(s) with ${done.size} videos; ${todo.length} videos to go`);

  await fs.mkdir(out, { recursive: true });
  const writer = new ShardWriter({
    dir: out,
    schema,
    formats,
    maxShardBytes,
    compression: options.compression,
    firstShard: journal.shards.reduce((m, sh) => Math.max(m, sh.index + 1), 0),
    onShard: async (shard) => {
      journal.shards.push({ index: shard.index, entries: shard.entries, videoIds: shard.videoIds, frames: shard.frames });
      await writeJournal(out, journal);
    },
  });
  await writeJournal(out, journal);

  // 5. Convert the videos, `workers` at a time, writing rows in input order.
  const progress = new Progress({ label: 'convert', total: todo.length, unit: 'videos', stream: options.progress ? process.stderr : null });
  const mediaSkips = new Map<number, SkipRecord[]>();
  // `workers` ffmpeg extractions at a time; twice as many lanes, so a lane encoding its frames
  // (on this thread) never holds up the next extraction.
  const ctx: GroupContext = { root, frameSize, sampling, encoder, features: featuresDir, schema, missingMedia, signal: options.signal, extractSlots: new Semaphore(workers) };
  const lanes = workers * 2;
  const batch = options.batch ?? defaultBatch(frameSize, sampling.maxFrames);
  if (!(Number.isInteger(batch) && batch >= 1)) throw new RpvError(`convert: --batch must be an integer >= 1; got ${batch}`);
  // Guided batches: a lane takes at most its share of what is left, so batches shrink towards
  // the end and the last ones do not leave workers idle.
  const batchNow = () => Math.max(1, Math.min(batch, Math.ceil((todo.length - nextToStart) / workers)));
  const window = lanes * batch * 2 + 8;
  const results = new Map<number, VideoRow | SkipRecord[]>();
  // Probes run a batch ahead, so an ffprobe's latency (containers other than mp4/mov) hides
  // behind earlier work without starting many ffprobe processes at once.
  const prepared = new Map<number, Promise<Prepared>>();
  const prepare = (i: number) => {
    if (i < todo.length && !prepared.has(i) && !aborted()) prepared.set(i, prepareGroup(todo[i]!, ctx).catch((err: unknown): Prepared => ({ kind: 'error', err })));
  };
  let nextToStart = 0;
  let nextToWrite = 0;
  let failure: unknown = null;
  const waiters: (() => void)[] = [];
  const wakeAll = () => {
    for (const w of waiters.splice(0)) w();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    wakeAll();
  };
  const aborted = () => options.signal?.aborted === true || failure !== null;
  const onAbort = () => wakeAll();
  options.signal?.addEventListener('abort', onAbort);
  let writing: Promise<void> = Promise.resolve();

  const drain = async () => {
    while (results.has(nextToWrite)) {
      const result = results.get(nextToWrite)!;
      results.delete(nextToWrite);
      if (Array.isArray(result)) mediaSkips.set(nextToWrite, result);
      else await writer.add(result);
      nextToWrite++;
      progress.tick(1, { skipped: skipped.length + countSkips(mediaSkips), shards: journal.shards.length });
      wakeAll();
    }
  };

  // A lane first waits for an extraction slot, then takes the next groups (up to `batchNow()`
  // videos and BATCH_MAX_SEC of video: sized when it can start, so batches shrink as the run
  // ends), extracts them in one ffmpeg process, gives the slot back, encodes them and hands the
  // rows to the writer.
  const slots = ctx.extractSlots!;
  const runWorker = async () => {
    const arena = new OutputArena();
    while (!aborted()) {
      // Room in the window first, holding no slot (the rows to write next may need one).
      while (nextToStart - nextToWrite >= window && !aborted()) await new Promise<void>((r) => waiters.push(r));
      if (aborted() || nextToStart >= todo.length) return;
      await slots.acquire();
      let held = true;
      const release = () => {
        if (held) {
          held = false;
          slots.release();
        }
      };
      const taken: number[] = [];
      let batchResults: (VideoRow | SkipRecord[])[];
      try {
        const readies: Exclude<Prepared, { kind: 'error' }>[] = [];
        let videos = 0;
        let seconds = 0;
        const cap = batchNow();
        while (taken.length === 0 || (videos < cap && seconds < BATCH_MAX_SEC)) {
          // A lane holding groups never waits for room: it may hold the next group to write.
          if (aborted() || nextToStart >= todo.length || nextToStart - nextToWrite >= window) break;
          const i = nextToStart++;
          taken.push(i);
          for (let k = i; k <= i + Math.max(workers, cap) && k < todo.length; k++) prepare(k);
          const ready = await prepared.get(i)!;
          prepared.delete(i);
          if (ready.kind === 'error') throw ready.err;
          readies.push(ready);
          if (ready.kind === 'video' && !ready.image) {
            videos++;
            seconds += ready.durationSec ?? 0;
          }
        }
        if (taken.length === 0) {
          release();
          continue;
        }
        batchResults = await finishBatch(readies, ctx, arena, release);
      } catch (err) {
        release();
        if (options.signal?.aborted) return;
        fail(err);
        return;
      }
      release();
      for (let b = 0; b < taken.length; b++) {
        const result = batchResults[b]!;
        if (Array.isArray(result) && options.strict) {
          fail(new RpvError(`convert --strict: ${result[0]!.source}${result[0]!.line !== undefined ? ` line ${result[0]!.line}` : ''}: ${result[0]!.reason}`));
          return;
        }
        results.set(taken[b]!, result);
      }
      writing = writing.then(drain).catch(fail);
      await writing;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(lanes, Math.max(1, todo.length)) }, runWorker));
    await writing;
    // Probes started ahead of an interrupt: let them settle (their ffprobe is killed by the signal).
    await Promise.all(prepared.values());
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  const interrupted = options.signal?.aborted === true && failure === null && (readInterrupted || nextToWrite < todo.length);
  if (failure !== null || interrupted) {
    progress.finish();
    writer.discard();
    encoder?.dispose?.();
    if (failure !== null) throw failure;
    const partial: ConvertSummary = {
      ...summaryOf(out, null, format.name, true, resumedShards, nextToWrite, started),
      shards: journal.shards.length,
    };
    return partial;
  }
  await writer.close();
  progress.tick(0, { shards: journal.shards.length });
  progress.finish();
  encoder?.dispose?.();

  // 6. The index.
  const skippedGroups = new Set<VideoGroup>();
  for (let i = 0; i < todo.length; i++) {
    const skips = mediaSkips.get(i);
    if (!skips) continue;
    skippedGroups.add(todo[i]!);
    skipped.push(...skips);
  }
  // Skips in input order (file, then line), whatever stage found them.
  skipped.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : (a.line ?? 0) - (b.line ?? 0)));
  const converted = groups.reduce((n, g) => n + (skippedGroups.has(g) ? 0 : g.records.length), 0);
  const shardEntries = journal.shards.flatMap((s) => s.entries);
  const rowsTotal = journal.shards.reduce((n, s) => n + s.videoIds.length, 0);
  const dialoguesTotal = journal.shards.reduce((n, s) => n + s.entries[0]!.dialogues, 0);
  const framesTotal = journal.shards.reduce((n, s) => n + s.frames, 0);
  const index: ShardIndex = {
    format: SHARD_FORMAT_NAME,
    version: SHARD_FORMAT_VERSION,
    created: new Date().toISOString(),
    schema: { ...schema, columns: SHARD_COLUMNS },
    sampling: samplingSettings,
    encoder: encoderInfo,
    input: { path: input, format: format.name, mediaRoot: root },
    ...(part.count > 1 ? { part: { index: part.index, count: part.count } } : {}),
    shards: shardEntries,
    totals: { rows: rowsTotal, dialogues: dialoguesTotal, frames: framesTotal, bytes: shardEntries.reduce((n, e) => n + e.bytes, 0), shards: shardEntries.length },
    counts: { read: read.items, converted, skipped: skipped.length, rows: rowsTotal, grouped: converted - rowsTotal },
    skipped,
  };
  if (rowsTotal !== groups.length - skippedGroups.size) {
    throw new Error(`convert: ${rowsTotal} rows in shards, expected ${groups.length - skippedGroups.size} (videos less skipped ones)`);
  }
  if (index.counts.read !== index.counts.converted + index.counts.skipped) {
    throw new Error(`convert: counts do not reconcile: read ${index.counts.read} != converted ${index.counts.converted} + skipped ${index.counts.skipped}`);
  }
  await writeShardIndex(out, index);
  await fs.rm(path.join(out, JOURNAL_FILE), { force: true });
  return summaryOf(out, index, format.name, false, resumedShards, todo.length, started);
}

function countSkips(m: Map<number, SkipRecord[]>): number {
  let n = 0;
  for (const v of m.values()) n += v.length;
  return n;
}

function summaryOf(out: string, index: ShardIndex | null, inputFormat: string, interrupted: boolean, resumedShards: number, videosProcessed: number, started: number): ConvertSummary {
  const skippedByReason: Record<string, number> = {};
  for (const s of index?.skipped ?? []) {
    const c = skipCategory(s.reason);
    skippedByReason[c] = (skippedByReason[c] ?? 0) + 1;
  }
  return {
    out,
    index,
    interrupted,
    inputFormat,
    counts: index?.counts ?? { read: 0, converted: 0, skipped: 0 },
    skippedByReason,
    rows: index?.totals.rows ?? 0,
    dialogues: index?.totals.dialogues ?? 0,
    shards: index?.totals.shards ?? 0,
    bytes: index?.totals.bytes ?? 0,
    resumedShards,
    videosProcessed,
    elapsedSec: (Date.now() - started) / 1000,
  };
}
