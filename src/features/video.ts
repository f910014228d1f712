/**
 * `encodeVideo`: the whole per-video path of conversion in one call: probe, adaptive sampling,
 * one-pass extraction, encoding. Images (MMRole and other image role-play data) become
 * one-frame videos through the same encoder, with the frame at time 0.
 */
import path from 'node:path';
import { extractFrames, extractImage } from '../media/extract.js';
import { probeVideo, type VideoInfo } from '../media/probe.js';
import { sampleFrameTimes, type SamplingOptions } from '../media/sampling.js';
import type { FrameEncoder } from './encoder.js';

/** File extensions read as still images (one frame) rather than videos. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp', '.bmp', '.tif', '.tiff'];

export interface EncodeVideoOptions {
  encoder: FrameEncoder;
  /** Frames are scaled to frameSize x frameSize before encoding (kept at their size for encoders with `nativeFrames`). */
  frameSize: number;
  sampling?: SamplingOptions;
  /** Read as an image (one frame) instead of a video. Default: by extension (IMAGE_EXTENSIONS). */
  image?: boolean;
  signal?: AbortSignal;
}

export interface EncodedVideo {
  /** Seconds (null for an image). */
  durationSec: number | null;
  numFrames: number;
  frameTimes: Float64Array;
  /** Flattened [numFrames, encoder.tokensPerFrame, encoder.featureDim]. */
  features: Float32Array;
  /** What ffprobe said (absent for images). */
  info?: VideoInfo;
}

/** Probe, sample, extract and encode `file`; media problems throw `MediaError` with a reason. */
export async function encodeVideo(file: string, options: EncodeVideoOptions): Promise<EncodedVideo> {
  const { encoder, frameSize, sampling, signal } = options;
  const image = options.image ?? IMAGE_EXTENSIONS.includes(path.extname(file).toLowerCase());
  if (image) {
    const frame = await extractImage(file, { frameSize, native: encoder.nativeFrames === true, signal });
    const features = await encoder.encode([frame], frameSize);
    return { durationSec: null, numFrames: 1, frameTimes: Float64Array.of(0), features };
  }
  const info = await probeVideo(file, { signal });
  const times = sampleFrameTimes(info.durationSec, sampling);
  const frames = await extractFrames(file, times, { frameSize, native: encoder.nativeFrames === true, signal });
  const features = await encoder.encode(frames, frameSize);
  return { durationSec: info.durationSec, numFrames: frames.length, frameTimes: Float64Array.from(times), features, info };
}
