/**
 * The per-video stages of a conversion. `prepareGroup`: text-only rows and precomputed features
 * finish here; a video gets its path checked (symlinks out of the export are refused) and is
 * probed, and its frame times are computed by the adaptive sampling rule. `finishGroup`: one
 * ffmpeg pass extracts the sampled frames, the encoder turns them into features. Media problems
 * become skips of every record of the video, with the reason.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';
import type { FeatureDType, FeatureSchema, SkipRecord, VideoRow } from '../shard/schema.js';
import { skipOf, type VideoGroup } from './group.js';

export interface GroupContext {
  root: string;
  frameSize: number;
  sampling: { fps: number; minFrames: number; maxFrames: number };
  encoder: import('../features/encoder.js').FrameEncoder | null;
  features: string | null;
  schema: FeatureSchema;
  missingMedia: 'skip' | 'text-only';
  signal?: AbortSignal;
}

/**
 * The schema of precomputed features: the dims of the first readable features file (in input
 * order). Files with other dims are skipped with the reason when their video comes up.
 */
export async function precomputedSchema(groups: readonly VideoGroup[], folder: string, dtype: FeatureDType): Promise<FeatureSchema> {
  const { readPrecomputedFeatures } = await import('../features/precomputed.js');
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

/** Does `target` (a real path) lie inside `root` (a real path)? */
function inside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
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
    real = await fs.realpath(file);
  } catch {
    real = null; // missing: the probe reports it
  }
  if (real !== null && !inside(realRootCache.real, real)) {
    return skipAll(`path escapes export: ${group.video} is a symlink to ${real}, outside the export folder`);
  }
  const { MediaError, probeVideo } = await import('../media/probe.js');

  if (ctx.features) {
    const { readPrecomputedFeatures, FeaturesError } = await import('../features/precomputed.js');
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

  const { IMAGE_EXTENSIONS } = await import('../features/video.js');
  const image = group.media === 'image' || IMAGE_EXTENSIONS.includes(path.extname(file).toLowerCase());
  if (image) return { kind: 'video', group, file, image, durationSec: null, times: [0] };
  try {
    const info = await probeVideo(file, { signal: ctx.signal });
    const { sampleFrameTimes } = await import('../media/sampling.js');
    return { kind: 'video', group, file, image, durationSec: info.durationSec, times: sampleFrameTimes(info.durationSec, ctx.sampling) };
  } catch (err) {
    if (err instanceof MediaError) return mediaSkip(group, file, err, ctx);
    throw err;
  }
}

function mediaSkip(group: VideoGroup, file: string, err: import('../media/probe.js').MediaError, ctx: GroupContext): Prepared {
  if (err.reason === 'missing' && ctx.missingMedia === 'text-only') return { kind: 'done', result: textOnlyRow(group) };
  const reason = `video ${err.reason}: ${err.message.split(file).join(group.video!)}`;
  return { kind: 'done', result: group.records.map((r) => skipOf(r, reason)) };
}

/** Second stage: one ffmpeg pass extracting the sampled frames, then the encoder. */
export async function finishGroup(ready: Exclude<Prepared, { kind: 'error' }>, ctx: GroupContext): Promise<VideoRow | SkipRecord[]> {
  if (ready.kind === 'done') return ready.result;
  const { group, file } = ready;
  const { MediaError } = await import('../media/probe.js');
  const { extractFrames, extractImage } = await import('../media/extract.js');
  try {
    const frames = ready.image
      ? [await extractImage(file, { frameSize: ctx.frameSize, signal: ctx.signal })]
      : await extractFrames(file, ready.times, { frameSize: ctx.frameSize, signal: ctx.signal });
    const features = await ctx.encoder!.encode(frames, ctx.frameSize);
    return {
      ...textOnlyRow(group),
      duration_sec: ready.durationSec,
      num_frames: frames.length,
      frame_times: Float64Array.from(ready.times),
      frames: features,
    };
  } catch (err) {
    if (err instanceof MediaError) {
      const skip = mediaSkip(group, file, err, ctx);
      return (skip as { result: VideoRow | SkipRecord[] }).result;
    }
    if (ctx.signal?.aborted) throw err;
    throw new RpvError(`convert: ${group.video}: ${errorMessage(err)}`, { cause: err });
  }
}
