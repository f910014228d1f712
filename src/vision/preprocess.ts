/**
 * Frame preprocessing for the vision towers, as the folder's processor does it, on the decoded
 * RGB24 frame:
 *
 * - CLIP (`CLIPImageProcessor`): resize so the shortest edge is `size.shortest_edge` (the long
 *   edge `int(short * long / short_in)`, as transformers' `get_resize_output_image_size`), centre
 *   crop `crop_size` (top `(h - ch) // 2`, left `(w - cw) // 2`), rescale, normalise;
 * - SigLIP (`SiglipImageProcessor`): resize to a fixed `size.height x size.width`, rescale,
 *   normalise (mean = std = 0.5), no crop;
 * - InternViT: InternVL's own `build_transform` (what its `load_video` and `extract_feature`
 *   callers use, whatever preprocessor_config.json says): a fixed resize to `image_size` squared,
 *   bicubic, `ToTensor` (/ 255), ImageNet mean and std.
 *
 * The resize is PIL's `Image.resize` (which transformers' and torchvision's PIL paths call):
 * separable convolution, the filter's support widened by the scale when shrinking, each output
 * pixel's weights normalised to 1, then quantised to 22-bit fixed point; horizontal pass first,
 * rounded to uint8, then the vertical pass, rounded to uint8. An axis whose size does not change
 * is not filtered, and a frame already at the output size is not resampled at all (PIL returns a
 * copy). Rescale and normalise follow numpy's float32 arithmetic: `float32(v * factor)`, then
 * `(x - mean) / std` in float32.
 */
import { RpvError } from '../util/errors.js';
import type { PreprocessorConfig, TowerFamily } from './types.js';

/** PIL's resampling filters by their `resample` number in preprocessor_config.json. */
export type ResampleFilter = 'bilinear' | 'bicubic';

const RESAMPLE: Record<number, ResampleFilter | string> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming' };

/** What is done to a frame before the tower, resolved from the folder's processor. */
export interface PreprocessPlan {
  /** Which rule this is (`CLIPImageProcessor`, `SiglipImageProcessor`, `InternVL build_transform`). */
  source: string;
  /** `shortest-edge`: keep the aspect ratio; `fixed`: to exactly height x width; null: no resize. */
  resize: { kind: 'shortest-edge'; shortestEdge: number } | { kind: 'fixed'; height: number; width: number } | null;
  resample: ResampleFilter;
  /** Centre crop to this size, or null. */
  crop: { height: number; width: number } | null;
  /** Multiply by this (1/255), or null for none. */
  rescale: number | null;
  /** Per-channel mean and std, or null for no normalisation. */
  mean: [number, number, number] | null;
  std: [number, number, number] | null;
}

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

function triple(value: unknown, field: string, fallback: [number, number, number]): [number, number, number] {
  if (value === undefined) return fallback;
  if (typeof value === 'number') return [value, value, value];
  if (Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number' && Number.isFinite(v))) return value as [number, number, number];
  throw new RpvError(`preprocessor_config.json: ${field} must be 3 numbers, found ${JSON.stringify(value)}`);
}

function positiveInt(value: unknown, field: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  throw new RpvError(`preprocessor_config.json: ${field} must be a positive integer, found ${JSON.stringify(value)}`);
}

/**
 * The plan for a tower of `family` whose input is `imageSize` squared, from its folder's
 * preprocessor_config.json (`config`, {} when absent). Throws naming the field when the config
 * asks for something rpv does not do, or does not give frames of `imageSize`.
 */
export function resolvePreprocess(family: TowerFamily, config: PreprocessorConfig, imageSize: number): PreprocessPlan {
  let plan: PreprocessPlan;
  if (family === 'internvit') {
    plan = {
      source: 'InternVL build_transform',
      resize: { kind: 'fixed', height: imageSize, width: imageSize },
      resample: 'bicubic',
      crop: null,
      rescale: 1 / 255,
      mean: IMAGENET_MEAN,
      std: IMAGENET_STD,
    };
  } else {
    const clip = family === 'clip';
    const source = typeof config.image_processor_type === 'string' ? config.image_processor_type : clip ? 'CLIPImageProcessor' : 'SiglipImageProcessor';
    const resampleCode = config.resample ?? 3;
    const resample = RESAMPLE[resampleCode];
    if (resample !== 'bicubic' && resample !== 'bilinear') {
      throw new RpvError(`preprocessor_config.json: resample ${resampleCode} (${resample ?? 'unknown'}) is not supported: rpv resamples as PIL with 2 (bilinear) or 3 (bicubic)`);
    }
    let resize: PreprocessPlan['resize'] = null;
    if (config.do_resize ?? true) {
      const size = config.size ?? (clip ? { shortest_edge: imageSize } : { height: imageSize, width: imageSize });
      if (typeof size === 'number') {
        // transformers' get_size_dict: an int is the shortest edge for CLIP, a square for SigLIP.
        resize = clip ? { kind: 'shortest-edge', shortestEdge: positiveInt(size, 'size') } : { kind: 'fixed', height: positiveInt(size, 'size'), width: size };
      } else if (size.shortest_edge !== undefined) {
        resize = { kind: 'shortest-edge', shortestEdge: positiveInt(size.shortest_edge, 'size.shortest_edge') };
      } else if (size.height !== undefined && size.width !== undefined) {
        resize = { kind: 'fixed', height: positiveInt(size.height, 'size.height'), width: positiveInt(size.width, 'size.width') };
      } else {
        throw new RpvError(`preprocessor_config.json: size must be {"shortest_edge": N} or {"height": H, "width": W}, found ${JSON.stringify(size)}`);
      }
    }
    let crop: PreprocessPlan['crop'] = null;
    if (config.do_center_crop ?? clip) {
      const c = config.crop_size ?? imageSize;
      crop = typeof c === 'number' ? { height: positiveInt(c, 'crop_size'), width: c } : { height: positiveInt(c.height, 'crop_size.height'), width: positiveInt(c.width, 'crop_size.width') };
    }
    const rescale = (config.do_rescale ?? true) ? (config.rescale_factor ?? 1 / 255) : null;
    if (rescale !== null && !(typeof rescale === 'number' && Number.isFinite(rescale))) throw new RpvError(`preprocessor_config.json: rescale_factor must be a number, found ${JSON.stringify(rescale)}`);
    const normalize = config.do_normalize ?? true;
    plan = {
      source,
      resize,
      resample,
      crop,
      rescale,
      mean: normalize ? triple(config.image_mean, 'image_mean', clip ? CLIP_MEAN : [0.5, 0.5, 0.5]) : null,
      std: normalize ? triple(config.image_std, 'image_std', clip ? CLIP_STD : [0.5, 0.5, 0.5]) : null,
    };
  }
  const out = outputSize(plan, imageSize * 2, imageSize);
  const shortOut = outputSize(plan, imageSize, imageSize * 2);
  if (out.width !== imageSize || out.height !== imageSize || shortOut.width !== imageSize || shortOut.height !== imageSize) {
    throw new RpvError(
      `preprocessor_config.json: ${plan.source} gives ${out.width}x${out.height} frames but the tower takes ${imageSize}x${imageSize} (config.json image_size): check size and crop_size`,
    );
  }
  return plan;
}

/** transformers' get_resize_output_image_size for `shortest_edge` (default_to_square=False). */
export function shortestEdgeSize(width: number, height: number, shortestEdge: number): { width: number; height: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((shortestEdge * long) / short);
  return width <= height ? { width: shortestEdge, height: newLong } : { width: newLong, height: shortestEdge };
}

/** Size after the resize (before the crop). */
export function resizedSize(plan: PreprocessPlan, width: number, height: number): { width: number; height: number } {
  if (plan.resize === null) return { width, height };
  if (plan.resize.kind === 'fixed') return { width: plan.resize.width, height: plan.resize.height };
  return shortestEdgeSize(width, height, plan.resize.shortestEdge);
}

/** Size of the frame the tower gets from a `width x height` frame. */
export function outputSize(plan: PreprocessPlan, width: number, height: number): { width: number; height: number } {
  const r = resizedSize(plan, width, height);
  return plan.crop ? { width: plan.crop.width, height: plan.crop.height } : r;
}

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

function bicubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function bilinear(x: number): number {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

/** PIL's per-output-pixel taps along one axis: first input index, count, fixed-point weights. */
function pilCoefficients(inSize: number, outSize: number, filter: ResampleFilter): { first: Int32Array; count: Int32Array; weights: Float64Array; taps: number } {
  const [kernel, baseSupport] = filter === 'bicubic' ? [bicubic, 2] : [bilinear, 1];
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = baseSupport * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  const w = new Float64Array(taps);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = kernel((x + xmin - center + 0.5) / filterScale);
      total += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const k = total !== 0 ? w[x]! / total : w[x]!;
      // PIL's normalize_coeffs_8bpc: round half away from zero, then truncate to int.
      weights[xx * taps + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { first, count, weights, taps };
}

function clip8(sum: number): number {
  if (sum <= 0) return 0;
  const v = Math.floor(sum / ONE);
  return v > 255 ? 255 : v;
}

/**
 * PIL's `Image.resize((outWidth, outHeight), resample)` of an RGB24 (`channels` 3) image, no box
 * and no reducing_gap: see the module comment. Returns the input itself when the size is equal.
 */
export function resizeRgb(src: Uint8Array, width: number, height: number, outWidth: number, outHeight: number, filter: ResampleFilter = 'bicubic', channels = 3): Uint8Array {
  if (src.length !== width * height * channels) throw new RpvError(`resize: frame holds ${src.length} bytes, expected ${width} x ${height} x ${channels}`);
  let img = src;
  let w = width;
  if (outWidth !== width) {
    const { first, count, weights, taps } = pilCoefficients(width, outWidth, filter);
    const out = new Uint8Array(outWidth * height * channels);
    const sums = new Float64Array(channels);
    for (let y = 0; y < height; y++) {
      const row = y * width * channels;
      const orow = y * outWidth * channels;
      for (let xx = 0; xx < outWidth; xx++) {
        const n = count[xx]!;
        const kb = xx * taps;
        sums.fill(HALF);
        let at = row + first[xx]! * channels;
        for (let x = 0; x < n; x++, at += channels) {
          const k = weights[kb + x]!;
          for (let c = 0; c < channels; c++) sums[c] += img[at + c]! * k;
        }
        for (let c = 0; c < channels; c++) out[orow + xx * channels + c] = clip8(sums[c]!);
      }
    }
    img = out;
    w = outWidth;
  }
  if (outHeight !== height) {
    const { first, count, weights, taps } = pilCoefficients(height, outHeight, filter);
    const out = new Uint8Array(w * outHeight * channels);
    const stride = w * channels;
    const acc = new Float64Array(stride);
    for (let yy = 0; yy < outHeight; yy++) {
      const y0 = first[yy]!;
      const n = count[yy]!;
      const kb = yy * taps;
      acc.fill(HALF);
      // Row by row: each input row is read once, in order, per output row.
      for (let y = 0; y < n; y++) {
        const k = weights[kb + y]!;
        const src = (y0 + y) * stride;
        for (let i = 0; i < stride; i++) acc[i] += img[src + i]! * k;
      }
      const orow = yy * stride;
      for (let i = 0; i < stride; i++) out[orow + i] = clip8(acc[i]!);
    }
    img = out;
  }
  return img;
}

/**
 * One RGB24 frame (`width x height`, row-major, RGB interleaved) through `plan`, written as
 * float32 [3, H, W] (channel planes, the tower's layout) into `out` at `offset`. Throws when the
 * result is not `size x size`.
 */
export function preprocessFrame(rgb: Uint8Array, width: number, height: number, plan: PreprocessPlan, size: number, out: Float32Array, offset = 0): void {
  const r = resizedSize(plan, width, height);
  const img = resizeRgb(rgb, width, height, r.width, r.height, plan.resample);
  let top = 0;
  let left = 0;
  let h = r.height;
  let w = r.width;
  if (plan.crop) {
    if (plan.crop.height > r.height || plan.crop.width > r.width) {
      throw new RpvError(`preprocess: a ${width}x${height} frame resized to ${r.width}x${r.height} is smaller than the ${plan.crop.width}x${plan.crop.height} crop`);
    }
    top = Math.floor((r.height - plan.crop.height) / 2);
    left = Math.floor((r.width - plan.crop.width) / 2);
    h = plan.crop.height;
    w = plan.crop.width;
  }
  if (h !== size || w !== size) throw new RpvError(`preprocess: a ${width}x${height} frame becomes ${w}x${h}, but the tower takes ${size}x${size}`);
  const f = Math.fround;
  // numpy: float32(uint8 * float64 factor); then (x - float32 mean) / float32 std in float32.
  const factor = plan.rescale;
  for (let c = 0; c < 3; c++) {
    const mean = plan.mean ? f(plan.mean[c]!) : 0;
    const std = plan.std ? f(plan.std[c]!) : 1;
    const base = offset + c * size * size;
    for (let y = 0; y < h; y++) {
      const srcRow = ((top + y) * r.width + left) * 3 + c;
      const dstRow = base + y * size;
      for (let x = 0; x < w; x++) {
        const v = img[srcRow + x * 3]!;
        const scaled = factor === null ? v : f(v * factor);
        out[dstRow + x] = plan.mean ? f(f(scaled - mean) / std) : scaled;
      }
    }
  }
}

/** Frames (each `width x height` RGB24) -> float32 [frames, 3, size, size] for `VisionTower.encode`. */
export function preprocessFrames(frames: readonly { rgb: Uint8Array; width: number; height: number }[], plan: PreprocessPlan, size: number): Float32Array {
  const out = new Float32Array(frames.length * 3 * size * size);
  frames.forEach((fr, i) => preprocessFrame(fr.rgb, fr.width, fr.height, plan, size, out, i * 3 * size * size));
  return out;
}

/** One line for `--dry-run`, logs and the README: what the plan does. */
export function describePreprocess(plan: PreprocessPlan): string {
  const parts: string[] = [];
  if (plan.resize?.kind === 'shortest-edge') parts.push(`resize shortest edge to ${plan.resize.shortestEdge} (${plan.resample})`);
  if (plan.resize?.kind === 'fixed') parts.push(`resize to ${plan.resize.width}x${plan.resize.height} (${plan.resample})`);
  if (plan.crop) parts.push(`centre crop ${plan.crop.width}x${plan.crop.height}`);
  if (plan.rescale !== null) parts.push(`x ${plan.rescale === 1 / 255 ? '1/255' : plan.rescale}`);
  if (plan.mean && plan.std) parts.push(`mean ${plan.mean.join('/')} std ${plan.std.join('/')}`);
  return `${plan.source}: ${parts.join(', ')}`;
}
