/**
 * `convertExport`: raw export -> shards + index.json.
 *
 *   check the options (`checkOptions`)
 *   -> read records (format auto-detected), keep this --part, group by video (`readRecords`)
 *   -> choose the encoder or precomputed features: the feature schema (`chooseEncoder`)
 *   -> per video: path check, probe, adaptive sampling; then batches of consecutive videos,
 *      `workers` ffmpeg processes at a time, each decoding its batch in one pass; encoding
 *      (`convertGroups`, ./schedule.ts)
 *   -> rows in input order -> ShardWriter (rotates at maxShardBytes, atomic files)
 *   -> journal after each shard (resume) -> index.json (atomic) at the end (`buildIndex`).
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
import type { FeatureDType, FeatureSchema, SamplingSettings, ShardFileFormat, ShardIndex } from '../shard/schema.js';
import { DEFAULT_MAX_SHARD_BYTES, ShardWriter, type ParquetCompression } from '../shard/write.js';
import { writeShardIndex } from '../shard/index-file.js';
import type { InputFormat } from './record.js';
import { detectInputFormat, getInputFormat, inputRoot } from './formats/index.js';
import { parsePart, skipCategory, type Part, type VideoGroup } from './group.js';
import { JOURNAL_FILE, writeJournal, type Journal } from './journal.js';
import { inputFilesFingerprint, prepareOutput } from './output.js';
import { precomputedSchema, type GroupContext } from './stages.js';
import { readRecords } from './read-records.js';
import { convertGroups, defaultVideosPerProcess } from './schedule.js';
import { buildIndex } from './build-index.js';

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
  /**
   * The role of InternVL / ShareGPT records that name none (who speaks the assistant turns).
   * Default: none, and such records are skipped with the reason.
   */
  defaultRole?: string;
  /** Input format; auto-detected when absent. */
  inputFormat?: string;
  /** Shard file format(s) written: `arrow`, `parquet` or `both`. Default `arrow`. */
  shardFormat?: OutputFormat;
  /** @deprecated The old name of `shardFormat`. */
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
  /** Encoder spec (`grid`, `grid:cells=8`, `tfjs:<folder>`, `hf:<folder>[#layer=-2,...]`). Default `grid`. */
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
  videosPerProcess?: number;
  /** @deprecated The old name of `videosPerProcess`. */
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
/** The square side whose area is a 1920x1080 frame's: what a batch of native frames is budgeted for. */
const NATIVE_BUDGET_FRAME_SIZE = 1440;

/** The options checked, with their defaults. */
interface Settings {
  shardFormat: OutputFormat;
  formats: ShardFileFormat[];
  dtype: FeatureDType;
  workers: number;
  videosPerProcess: number;
  maxShardBytes: number;
  part: Part;
  sampling: { fps: number; minFrames: number; maxFrames: number };
  /** The sampling written to the index (with the frame size). */
  samplingSettings: SamplingSettings;
  frameSize: number;
  missingMedia: 'skip' | 'text-only';
}

/** Check the options; throws naming the flag. */
async function checkOptions(options: ConvertOptions): Promise<Settings> {
  const shardFormat = options.shardFormat ?? options.format ?? 'arrow';
  if (!['arrow', 'parquet', 'both'].includes(shardFormat)) throw new RpvError(`convert: --format must be arrow, parquet or both; got ${shardFormat}`);
  const formats: ShardFileFormat[] = shardFormat === 'both' ? ['arrow', 'parquet'] : [shardFormat];
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
  // hf: towers take frames at their decoded size: budget the batch for 1080p frames.
  const nativeFrames = (options.encoder ?? '').trim().startsWith('hf:') && !options.features;
  const videosPerProcess = options.videosPerProcess ?? options.batch ?? defaultVideosPerProcess(nativeFrames ? NATIVE_BUDGET_FRAME_SIZE : frameSize, sampling.maxFrames);
  if (!(Number.isInteger(videosPerProcess) && videosPerProcess >= 1)) {
    throw new RpvError(`convert: --videos-per-process must be an integer >= 1; got ${videosPerProcess}`);
  }
  return {
    shardFormat,
    formats,
    dtype,
    workers,
    videosPerProcess,
    maxShardBytes,
    part,
    sampling,
    samplingSettings: { ...sampling, frameSize },
    frameSize,
    missingMedia: options.missingMedia ?? 'skip',
  };
}

/** The frame encoder (none with precomputed features) and the feature schema it gives. */
async function chooseEncoder(options: ConvertOptions, groups: readonly VideoGroup[], journal: Journal, dtype: FeatureDType) {
  const featuresDir = options.features ? path.resolve(options.features) : null;
  if (featuresDir) {
    const encoderInfo = { id: 'precomputed', kind: 'precomputed', folder: featuresDir };
    const schema = journal.schema ?? (await precomputedSchema(groups, featuresDir, dtype));
    return { encoder: null, encoderInfo, schema, featuresDir };
  }
  const { createEncoder } = await import('../features/encoder.js');
  const encoder = await createEncoder(options.encoder ?? 'grid', { backend: options.encoderBackend });
  const schema: FeatureSchema = { featureDim: encoder.featureDim, tokensPerFrame: encoder.tokensPerFrame, dtype };
  return { encoder, encoderInfo: encoder.describe(), schema, featuresDir };
}

/** Where the records are: the input, its format, the media root, the output folder. */
async function locate(options: ConvertOptions): Promise<{ input: string; format: InputFormat; root: string; out: string }> {
  const input = path.resolve(options.input);
  const format = options.inputFormat ? getInputFormat(options.inputFormat) : await detectInputFormat(input);
  const root = options.mediaRoot ? path.resolve(options.mediaRoot) : await inputRoot(input);
  if (options.mediaRoot && !(await fs.stat(root).then((st) => st.isDirectory()).catch(() => false))) {
    throw new RpvError(`convert: --media-root ${options.mediaRoot} is not a folder`);
  }
  return { input, format, root, out: path.resolve(options.out) };
}

/** Convert an export to shards; see the module comment. */
export async function convertExport(options: ConvertOptions): Promise<ConvertSummary> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const settings = await checkOptions(options);
  const { input, format, root, out } = await locate(options);
  // Options that change the output: a resume with other ones is refused. (`format` is the shard format.)
  const fingerprint = {
    input,
    inputFiles: await inputFilesFingerprint(input, out),
    mediaRoot: root,
    inputFormat: format.name,
    format: settings.shardFormat,
    dtype: settings.dtype,
    sampling: settings.samplingSettings,
    encoder: options.features ? null : (options.encoder ?? 'grid'),
    features: options.features ? path.resolve(options.features) : null,
    part: `${settings.part.index}/${settings.part.count}`,
    maxShardBytes: settings.maxShardBytes,
    compression: options.compression ?? 'zstd',
    missingMedia: settings.missingMedia,
    defaultRole: options.defaultRole ?? null,
  };

  // The output folder: fresh, overwritten, or resumed.
  const journal = await prepareOutput(out, options, fingerprint, log);
  if (journal === 'complete') {
    const { readShardIndex } = await import('../shard/index-file.js');
    const index = await readShardIndex(out);
    log(`convert --resume: ${out} is already complete (index.json written); nothing to do`);
    return summaryOf(out, index, format.name, false, 0, 0, started);
  }

  const read = await readRecords(format, input, {
    root,
    missingMedia: settings.missingMedia,
    part: settings.part,
    strict: options.strict ?? false,
    signal: options.signal,
    defaultRole: options.defaultRole ?? null,
    // Absolute media paths only behind an explicit --media-root, and only inside it.
    absoluteMediaRoot: options.mediaRoot ? root : null,
  });
  const { encoder, encoderInfo, schema, featuresDir } = await chooseEncoder(options, read.groups, journal, settings.dtype);
  if (journal.encoder && journal.encoder.id !== encoderInfo.id) {
    encoder?.dispose?.();
    throw new RpvError(
      `convert --resume: ${out} was started with encoder ${journal.encoder.id}, but ${options.encoder ?? 'grid'} is now ${encoderInfo.id} (its weights or settings changed); use --overwrite to start again`,
    );
  }
  journal.encoder = encoderInfo;
  // A tower takes frames at their decoded size and resamples them itself: the index records its input size.
  if (encoder?.nativeFrames && typeof encoderInfo.imageSize === 'number') settings.samplingSettings = { ...settings.samplingSettings, frameSize: encoderInfo.imageSize };
  journal.schema = schema;

  // Which videos are already in finished shards (resume).
  const done = new Set<string>();
  for (const shard of journal.shards) for (const id of shard.videoIds) done.add(id);
  const todo = read.groups.filter((g) => !done.has(g.videoId));
  const resumedShards = journal.shards.length;
  if (resumedShards > 0) log(`convert --resume: keeping ${resumedShards} finished shard(s) with ${done.size} videos; ${todo.length} videos to go`);

  await fs.mkdir(out, { recursive: true });
  const writer = new ShardWriter({
    dir: out,
    schema,
    formats: settings.formats,
    maxShardBytes: settings.maxShardBytes,
    compression: options.compression,
    firstShard: journal.shards.reduce((m, sh) => Math.max(m, sh.index + 1), 0),
    onShard: async (shard) => {
      journal.shards.push({ index: shard.index, entries: shard.entries, videoIds: shard.videoIds, frames: shard.frames });
      await writeJournal(out, journal);
    },
  });
  await writeJournal(out, journal);

  const progress = new Progress({ label: 'convert', total: todo.length, unit: 'videos', stream: options.progress ? process.stderr : null });
  let framesDone = 0;
  const { frameSize, sampling, missingMedia, workers } = settings;
  const ctx: GroupContext = { root, frameSize, sampling, encoder, features: featuresDir, schema, missingMedia, signal: options.signal, extractSlots: new Semaphore(workers) };
  const converted = await convertGroups(todo, ctx, {
    workers,
    videosPerProcess: settings.videosPerProcess,
    strict: options.strict ?? false,
    signal: options.signal,
    write: (row) => {
      framesDone += row.num_frames;
      return writer.add(row);
    },
    onDone: (mediaSkips) =>
      progress.tick(1, {
        'frames/s': framesPerSec(framesDone, progress.elapsedSec),
        skipped: read.skipped.length + mediaSkips,
        shards: journal.shards.length,
      }),
  });
  const { failure } = converted;
  const interrupted = options.signal?.aborted === true && failure === null && (read.interrupted || converted.written < todo.length);
  if (failure !== null || interrupted) {
    progress.finish();
    writer.discard();
    encoder?.dispose?.();
    if (failure !== null) throw failure;
    return { ...summaryOf(out, null, format.name, true, resumedShards, converted.written, started), shards: journal.shards.length };
  }
  await writer.close();
  progress.tick(0, { shards: journal.shards.length });
  progress.finish();
  encoder?.dispose?.();

  const index = buildIndex({
    groups: read.groups,
    todo,
    readSkips: read.skipped,
    mediaSkips: converted.mediaSkips,
    readItems: read.items,
    shards: journal.shards,
    schema,
    sampling: settings.samplingSettings,
    encoder: encoderInfo,
    input: { path: input, format: format.name, mediaRoot: root },
    part: settings.part,
  });
  await writeShardIndex(out, index);
  await fs.rm(path.join(out, JOURNAL_FILE), { force: true });
  return summaryOf(out, index, format.name, false, resumedShards, todo.length, started);
}

/** Frames per second for the progress bar: two significant digits below 10 (a tower may take 0.03). */
function framesPerSec(frames: number, sec: number): string {
  if (!(sec > 0)) return '0';
  const rate = frames / sec;
  return rate >= 10 ? rate.toFixed(0) : rate.toPrecision(2);
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
