/**
 * The per-video stages of a conversion. `prepareGroup`: text-only rows and precomputed features
 * finish here; a video gets its path checked (symlinks out of the export are refused) and is
 * probed, and its frame times are computed by the adaptive sampling rule. `finishBatch`: one
 * ffmpeg process extracts the sampled frames of consecutive videos, the encoder turns them into
 * features. Media problems become skips of every record of the video, with the reason.
 */
import { realpathSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';
import { IMAGE_EXTENSIONS } from '../features/video.js';
import { FeaturesError, readPrecomputedFeatures } from '../features/precomputed.js';
import { extractFramesBatch, extractImage } from '../media/extract.js';
import { MediaError, probeVideo } from '../media/probe.js';
import type { OutputArena } from '../media/spawn.js';
import { sampleFrameTimes } from '../media/sampling.js';
import type { FeatureDType, FeatureSchema, SkipRecord, VideoRow } from '../shard/schema.js';
import { skipOf, type VideoGroup } from './group.js';
import { symlinkProblem } from './media-path.js';

export interface GroupContext {
  root: string;
  frameSize: number;
  sampling: { fps: number; minFrames: number; maxFrames: number };
  encoder: import('../features/encoder.js').FrameEncoder | null;
  features: string | null;
  schema: FeatureSchema;
  missingMedia: 'skip' | 'text-only';
  signal?: AbortSignal;
  /**
   * Bounds the ffmpeg extractions running at once. A lane takes a slot before choosing its batch
   * and gives it back as soon as the frames are out (`finishBatch`'s `extracted`), before
   * encoding them, so the next batch's ffmpeg starts meanwhile.
   */
  extractSlots?: import('../util/semaphore.js').Semaphore;
}

/**
 * The schema of precomputed features: the dims of the first readable features file (in input
 * order). Files with other dims are skipped with the reason when their video comes up.
 */
export async function precomputedSchema(groups: readonly VideoGroup[], folder: string, dtype: FeatureDType): Promise<FeatureSchema> {
  for (const group of groups) {
    if (group.video === null) continue;
    try {
      const feats = await readPrecomputedFeatures(folder, group.videoId);
      return { featureDim: feats.featureDim, tokensPerFrame: feats.tokensPerFrame, dtype };
    } catch {
      // unreadable: skipped with its reason later
    }
  }
  return { featureDim: 0, tokensPerFrame: 0, dtype };
}

function textOnlyRow(group: VideoGroup): VideoRow {
  return {
    video_id: group.videoId,
    source: group.source,
    role: group.role,
    language: group.language,
    platform: group.platform,
    profile: group.profile,
    summary: group.summary,
    duration_sec: null,
    num_frames: 0,
    frame_times: new Float64Array(0),
    frames: new Float32Array(0),
    dialogues: group.dialogues,
  };
}

let realRootCache: { root: string; real: string } | null = null;

/** A group after its first stage: a finished result, or a video probed and ready to extract. */
export type Prepared =
  | { kind: 'done'; result: VideoRow | SkipRecord[] }
  | { kind: 'video'; group: VideoGroup; file: string; image: boolean; durationSec: number | null; times: number[] }
  | { kind: 'error'; err: unknown };

/**
 * First stage of a group: text-only rows and precomputed features finish here; videos get their
 * path checked, are probed and their frame times computed. Media problems become skips.
 */
export async function prepareGroup(group: VideoGroup, ctx: GroupContext): Promise<Prepared> {
  if (group.video === null) return { kind: 'done', result: textOnlyRow(group) };
  const schema = ctx.schema;
  const skipAll = (reason: string): Prepared => ({ kind: 'done', result: group.records.map((r) => skipOf(r, reason)) });
  const file = path.join(ctx.root, group.video);
  // A symlink (or a symlinked folder) may lead out of the export: resolve and check.
  if (realRootCache?.root !== ctx.root) realRootCache = { root: ctx.root, real: await fs.realpath(ctx.root) };
  let real: string | null = null;
  try {
    real = realpathSync(file); // local and quick: cheaper than a thread-pool round trip per video
  } catch {
    real = null; // missing: the probe reports it
  }
  const escape = symlinkProblem(realRootCache.real, group.video, real);
  if (escape !== null) return skipAll(escape);

  if (ctx.features) {
    let feats;
    try {
      feats = await readPrecomputedFeatures(ctx.features, group.videoId);
    } catch (err) {
      if (err instanceof FeaturesError) return skipAll(`features ${err.reason === 'missing-features' ? 'missing' : 'bad'}: ${err.message}`);
      throw err;
    }
    if (feats.featureDim !== schema.featureDim || feats.tokensPerFrame !== schema.tokensPerFrame) {
      return skipAll(
        `features bad: ${feats.file}: [${feats.numFrames}, ${feats.tokensPerFrame}, ${feats.featureDim}] does not match the dataset's tokensPerFrame ${schema.tokensPerFrame} x featureDim ${schema.featureDim}`,
      );
    }
    let duration: number | null = null;
    try {
      duration = (await probeVideo(file, { signal: ctx.signal })).durationSec;
    } catch (err) {
      if (!(err instanceof MediaError)) throw err;
    }
    const row: VideoRow = { ...textOnlyRow(group), duration_sec: duration, num_frames: feats.numFrames, frame_times: feats.frameTimes, frames: feats.frames };
    return { kind: 'done', result: row };
  }

  const image = group.media === 'image' || IMAGE_EXTENSIONS.includes(path.extname(file).toLowerCase());
  if (image) return { kind: 'video', group, file, image, durationSec: null, times: [0] };
  try {
    const info = await probeVideo(file, { signal: ctx.signal });
    return { kind: 'video', group, file, image, durationSec: info.durationSec, times: sampleFrameTimes(info.durationSec, ctx.sampling) };
  } catch (err) {
    if (err instanceof MediaError) return mediaSkip(group, file, err, ctx);
    throw err;
  }
}

function mediaSkip(group: VideoGroup, file: string, err: MediaError, ctx: GroupContext): Prepared {
  if (err.reason === 'missing' && ctx.missingMedia === 'text-only') return { kind: 'done', result: textOnlyRow(group) };
  const reason = `video ${err.reason}: ${err.message.split(file).join(group.video!)}`;
  return { kind: 'done', result: group.records.map((r) => skipOf(r, reason)) };
}

/**
 * Second stage, for consecutive groups: the videos' sampled frames extracted by one ffmpeg
 * process (images one by one), then encoded; results in the order of `readies`.
 */
export async function finishBatch(
  readies: readonly Exclude<Prepared, { kind: 'error' }>[],
  ctx: GroupContext,
  arena?: OutputArena,
  /** Called once the frames are out (before encoding): the caller's extraction slot can go. */
  extracted?: () => void,
): Promise<(VideoRow | SkipRecord[])[]> {
  const frames = new Map<number, Uint8Array[] | MediaError>();
  // A vision tower takes frames at their decoded size and resamples them as its processor does.
  const native = ctx.encoder?.nativeFrames === true;
  const videos = readies.flatMap((r, k) => (r.kind === 'video' && !r.image ? [{ k, file: r.file, timesSec: r.times }] : []));
  const extract = async () => {
    if (videos.length > 0) {
      // The frames are views into `arena` (the lane's): all encoded before this returns.
      const got = await extractFramesBatch(videos, { frameSize: ctx.frameSize, native: native, signal: ctx.signal, checked: true, arena });
      videos.forEach((v, i) => frames.set(v.k, got[i]!));
    }
    for (let k = 0; k < readies.length; k++) {
      const r = readies[k]!;
      if (r.kind !== 'video' || !r.image) continue;
      try {
        frames.set(k, [await extractImage(r.file, { frameSize: ctx.frameSize, native, signal: ctx.signal })]);
      } catch (err) {
        if (!(err instanceof MediaError)) throw err;
        frames.set(k, err);
      }
    }
  };
  if (readies.some((r) => r.kind === 'video')) await extract();
  if (extracted) {
    extracted();
    // Let the lane that gets the slot spawn its ffmpeg before this one encodes on this thread.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const out: (VideoRow | SkipRecord[])[] = [];
  for (let k = 0; k < readies.length; k++) {
    const ready = readies[k]!;
    if (ready.kind === 'done') {
      out.push(ready.result);
      continue;
    }
    const { group, file } = ready;
    const got = frames.get(k)!;
    if (got instanceof MediaError) {
      out.push((mediaSkip(group, file, got, ctx) as { result: VideoRow | SkipRecord[] }).result);
      continue;
    }
    try {
      const features = await ctx.encoder!.encode(got, ctx.frameSize);
      out.push({
        ...textOnlyRow(group),
        duration_sec: ready.durationSec,
        num_frames: got.length,
        frame_times: Float64Array.from(ready.times),
        frames: features,
      });
    } catch (err) {
      if (ctx.signal?.aborted) throw err;
      throw new RpvError(`convert: ${group.video}: ${errorMessage(err)}`, { cause: err });
    }
  }
  return out;
}
