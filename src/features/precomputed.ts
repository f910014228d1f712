/**
 * Precomputed frame features (`rpv convert --features <folder>`): features made elsewhere (e.g. by
 * a CLIP or SigLIP tower in PyTorch) used instead of an encoder. One file per video, named by
 * the record's video id:
 *
 * - `<id>.safetensors` with tensors `features` ([frames, dim] or [frames, tokens, dim]; F32, F16
 *   or BF16) and `frame_times` ([frames], seconds; F32 or F64);
 * - or `<id>.npy` ([frames, dim] or [frames, tokens, dim]; float32 or float16, C order) with its
 *   timestamps beside it, either `<id>.json` `{"frame_times": [0.5, 1.5, ...]}` or `<id>.times.npy`
 *   ([frames] floats).
 *
 * Timestamps are seconds from the start of the video, one per frame, increasing.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';
import { readSafetensors } from '../util/safetensors.js';
import { parseNpy } from './npy.js';

export interface PrecomputedFeatures {
  /** The file the features came from. */
  file: string;
  numFrames: number;
  tokensPerFrame: number;
  featureDim: number;
  /** dtype on disk. */
  dtype: 'float16' | 'float32' | 'bfloat16' | 'float64';
  /** Flattened [numFrames, tokensPerFrame, featureDim]. */
  frames: Float32Array;
  frameTimes: Float64Array;
}

/** Missing or malformed precomputed features; `reason` tells which. */
export class FeaturesError extends RpvError {
  readonly reason: 'missing-features' | 'bad-features';
  constructor(reason: 'missing-features' | 'bad-features', message: string) {
    super(message);
    this.name = 'FeaturesError';
    this.reason = reason;
  }
}

/** Read the features of `videoId` from `folder` (see the module comment for the layout). */
export async function readPrecomputedFeatures(folder: string, videoId: string): Promise<PrecomputedFeatures> {
  const base = path.resolve(folder, videoId);
  if (path.relative(path.resolve(folder), base).startsWith('..') || path.isAbsolute(videoId)) {
    throw new FeaturesError('bad-features', `features: video id ${JSON.stringify(videoId)} would name a file outside ${folder}`);
  }
  const st = `${base}.safetensors`;
  const npy = `${base}.npy`;
  const [hasSt, hasNpy] = await Promise.all([exists(st), exists(npy)]);
  if (hasSt && hasNpy) throw new FeaturesError('bad-features', `features: both ${st} and ${npy} exist; keep one`);
  if (hasSt) return readSafetensorsFeatures(st);
  if (hasNpy) return readNpyFeatures(npy);
  throw new FeaturesError('missing-features', `features: no ${videoId}.safetensors or ${videoId}.npy in ${folder}`);
}

async function readSafetensorsFeatures(file: string): Promise<PrecomputedFeatures> {
  let tensors;
  try {
    ({ tensors } = await readSafetensors(file, file));
  } catch (err) {
    throw new FeaturesError('bad-features', errorMessage(err));
  }
  const features = tensors.get('features');
  const times = tensors.get('frame_times');
  if (!features) throw new FeaturesError('bad-features', `${file}: no tensor "features" (found: ${[...tensors.keys()].join(', ') || 'none'})`);
  if (!times) throw new FeaturesError('bad-features', `${file}: no tensor "frame_times" with the frames' timestamps in seconds`);
  const dtypes = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;
  const dtype = dtypes[features.dtype as keyof typeof dtypes];
  if (!dtype) throw new FeaturesError('bad-features', `${file}: tensor "features" is ${features.dtype}; expected F32, F16 or BF16`);
  if (!(times.dtype === 'F32' || times.dtype === 'F64')) throw new FeaturesError('bad-features', `${file}: tensor "frame_times" is ${times.dtype}; expected F32 or F64`);
  if (times.shape.length !== 1) throw new FeaturesError('bad-features', `${file}: tensor "frame_times" has shape [${times.shape.join(', ')}]; expected [frames]`);
  return assemble(file, features.shape, features.data as Float32Array, dtype, Float64Array.from(times.data));
}

async function readNpyFeatures(file: string): Promise<PrecomputedFeatures> {
  const arr = parseNpyFile(await readBytes(file), file);
  if (arr.dtype === 'float64') throw new FeaturesError('bad-features', `${file}: dtype float64 is not supported for features; save float32 or float16 (a.astype(np.float32))`);
  const stem = file.slice(0, -'.npy'.length);
  const jsonFile = `${stem}.json`;
  const timesFile = `${stem}.times.npy`;
  let frameTimes: Float64Array;
  if (await exists(jsonFile)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await fs.readFile(jsonFile, 'utf8'));
    } catch (err) {
      throw new FeaturesError('bad-features', `${jsonFile}: not valid JSON (${errorMessage(err)})`);
    }
    const list = (parsed as { frame_times?: unknown })?.frame_times;
    if (!Array.isArray(list) || !list.every((t) => typeof t === 'number')) {
      throw new FeaturesError('bad-features', `${jsonFile}: expected {"frame_times": [seconds, ...]}`);
    }
    frameTimes = Float64Array.from(list as number[]);
  } else if (await exists(timesFile)) {
    const t = parseNpyFile(await readBytes(timesFile), timesFile);
    if (t.shape.length !== 1) throw new FeaturesError('bad-features', `${timesFile}: shape (${t.shape.join(', ')}); expected (frames,)`);
    frameTimes = Float64Array.from(t.data);
  } else {
    throw new FeaturesError('bad-features', `${file}: no timestamps: write ${path.basename(jsonFile)} {"frame_times": [...]} or ${path.basename(timesFile)}`);
  }
  return assemble(file, arr.shape, arr.data, arr.dtype, frameTimes);
}

function assemble(file: string, shape: number[], data: Float32Array, dtype: PrecomputedFeatures['dtype'], frameTimes: Float64Array): PrecomputedFeatures {
  if (shape.length !== 2 && shape.length !== 3) {
    throw new FeaturesError('bad-features', `${file}: features have shape [${shape.join(', ')}]; expected [frames, dim] or [frames, tokens, dim]`);
  }
  const [numFrames, a, b] = shape as [number, number, number | undefined];
  const tokensPerFrame = shape.length === 3 ? a : 1;
  const featureDim = shape.length === 3 ? b! : a;
  if (numFrames < 1 || tokensPerFrame < 1 || featureDim < 1) {
    throw new FeaturesError('bad-features', `${file}: features have shape [${shape.join(', ')}]; every dimension must be at least 1`);
  }
  if (frameTimes.length !== numFrames) {
    throw new FeaturesError('bad-features', `${file}: ${numFrames} frames of features but ${frameTimes.length} timestamps`);
  }
  for (let i = 0; i < frameTimes.length; i++) {
    const t = frameTimes[i]!;
    if (!(Number.isFinite(t) && t >= 0)) throw new FeaturesError('bad-features', `${file}: timestamp ${i} is ${t}; expected seconds >= 0`);
    if (i > 0 && t < frameTimes[i - 1]!) throw new FeaturesError('bad-features', `${file}: timestamps must increase: ${frameTimes[i - 1]} then ${t} at frame ${i}`);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      const per = tokensPerFrame * featureDim;
      throw new FeaturesError('bad-features', `${file}: feature value ${data[i]} at frame ${Math.floor(i / per)}, token ${Math.floor((i % per) / featureDim)}, index ${i % featureDim}`);
    }
  }
  return { file, numFrames, tokensPerFrame, featureDim, dtype, frames: data, frameTimes };
}

function parseNpyFile(bytes: Uint8Array, file: string) {
  try {
    return parseNpy(bytes, file);
  } catch (err) {
    throw new FeaturesError('bad-features', errorMessage(err));
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

async function readBytes(file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await fs.readFile(file));
  } catch (err) {
    throw new FeaturesError('bad-features', `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
  }
}
