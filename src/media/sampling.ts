/**
 * Adaptive temporal sampling (the paper's dynamic profile): longer videos get more frames, up to
 * a cap, always in temporal order.
 *
 *   n = clamp(round(durationSec * fps), minFrames, maxFrames)
 *   frame i (0-based) at the centre of the i-th of n equal segments of [0, duration):
 *   t_i = duration * (i + 0.5) / n
 */
import { RpvError } from '../util/errors.js';

export interface SamplingOptions {
  /** Frames per second of video before clamping. Default 1. */
  fps?: number;
  /** Fewest frames for any video, however short. Default 4. */
  minFrames?: number;
  /** Most frames for any video, however long (bounds tokens per sample). Default 16. */
  maxFrames?: number;
}

export const DEFAULT_SAMPLING = { fps: 1, minFrames: 4, maxFrames: 16 } as const;

/** Number of frames the rule gives for a video of `durationSec`. */
export function sampleFrameCount(durationSec: number, options: SamplingOptions = {}): number {
  const { fps, minFrames, maxFrames } = validateSampling(options);
  checkDuration(durationSec);
  return Math.min(maxFrames, Math.max(minFrames, Math.round(durationSec * fps)));
}

/** Timestamps (seconds, increasing) of the frames to sample from a video of `durationSec`. */
export function sampleFrameTimes(durationSec: number, options: SamplingOptions = {}): number[] {
  const n = sampleFrameCount(durationSec, options);
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push((durationSec * (i + 0.5)) / n);
  return times;
}

/** Fill defaults and check the options; throws an RpvError naming the bad option. */
export function validateSampling(options: SamplingOptions = {}): Required<SamplingOptions> {
  const fps = options.fps ?? DEFAULT_SAMPLING.fps;
  const minFrames = options.minFrames ?? DEFAULT_SAMPLING.minFrames;
  const maxFrames = options.maxFrames ?? DEFAULT_SAMPLING.maxFrames;
  if (!(Number.isFinite(fps) && fps > 0)) throw new RpvError(`sampling: fps must be a positive number, got ${fps}`);
  if (!(Number.isInteger(minFrames) && minFrames >= 1)) throw new RpvError(`sampling: minFrames must be an integer >= 1, got ${minFrames}`);
  if (!(Number.isInteger(maxFrames) && maxFrames >= 1)) throw new RpvError(`sampling: maxFrames must be an integer >= 1, got ${maxFrames}`);
  if (minFrames > maxFrames) throw new RpvError(`sampling: minFrames (${minFrames}) must not exceed maxFrames (${maxFrames})`);
  return { fps, minFrames, maxFrames };
}

function checkDuration(durationSec: number): void {
  if (!(Number.isFinite(durationSec) && durationSec > 0)) {
    throw new RpvError(`sampling: video duration must be a positive number of seconds, got ${durationSec}`);
  }
}
