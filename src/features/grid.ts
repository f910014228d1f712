/**
 * `grid-v1`: the default frame encoder. No model, no randomness: a few colour, contrast and edge
 * statistics per cell of a G x G grid, plus a crude foreground summary (where and what colour
 * the pixels that differ from the frame's dominant colour are). Specified in
 * `src/features/README.md`; any change to the numbers bumps the version in the id.
 */
import { RpvError } from '../util/errors.js';
import { loadNativeAddon } from '../native/addon.js';
import type { EncoderDescription, FrameEncoder } from './frame-encoder.js';

export type GridTokens = 'frame' | 'cell';

export interface GridEncoderOptions {
  /** Cells per side: the frame is cut into cells x cells regions. Default 4. */
  cells?: number;
  /**
   * `frame` (default): one token per frame holding every cell's statistics and the foreground
   * summary (dim cells*cells*7 + 6). `cell`: one token per cell (dim 9: 7 statistics + its
   * column and row).
   */
  tokens?: GridTokens;
  /**
   * Who computes the per-frame sums: `auto` (default) the native addon when built, else JS;
   * `js` or `native` to force one (tests, benchmarks). The features are identical.
   */
  kernel?: GridKernel;
}

export type GridKernel = 'auto' | 'js' | 'native';

export const GRID_VERSION = 1;
/** Statistics of one cell, in order. */
export const GRID_CELL_FEATURES = ['mean_r', 'mean_g', 'mean_b', 'luma_std', 'edge_x', 'edge_y', 'salience'] as const;
/** Whole-frame foreground summary appended to a `frame` token, in order. */
export const GRID_FRAME_FEATURES = ['fg_x', 'fg_y', 'fg_area', 'fg_r', 'fg_g', 'fg_b'] as const;

/** Foreground: a pixel whose |R-r|+|G-g|+|B-b| from the frame's median colour exceeds this. */
const FOREGROUND_THRESHOLD = 60;

export class GridEncoder implements FrameEncoder {
  readonly id: string;
  readonly featureDim: number;
  readonly tokensPerFrame: number;
  readonly cells: number;
  readonly tokens: GridTokens;

  private readonly native: GridSumsFn | null;

  constructor({ cells = 4, tokens = 'frame', kernel = 'auto' }: GridEncoderOptions = {}) {
    if (!(Number.isInteger(cells) && cells >= 1 && cells <= 32)) throw new RpvError(`encoder grid: cells must be an integer from 1 to 32, got ${cells}`);
    if (tokens !== 'frame' && tokens !== 'cell') throw new RpvError(`encoder grid: tokens must be "frame" or "cell", got ${String(tokens)}`);
    this.cells = cells;
    this.tokens = tokens;
    const nc = GRID_CELL_FEATURES.length;
    this.tokensPerFrame = tokens === 'frame' ? 1 : cells * cells;
    this.featureDim = tokens === 'frame' ? cells * cells * nc + GRID_FRAME_FEATURES.length : nc + 2;
    this.id = `grid-v${GRID_VERSION}:cells=${cells},tokens=${tokens}`;
    this.native = nativeGridSums(kernel);
  }

  describe(): EncoderDescription {
    return {
      id: this.id,
      /** The `--encoder` spec that recreates this encoder. */
      spec: `grid:cells=${this.cells},tokens=${this.tokens}`,
      kind: 'grid',
      version: GRID_VERSION,
      featureDim: this.featureDim,
      tokensPerFrame: this.tokensPerFrame,
      cells: this.cells,
      tokens: this.tokens,
      cellFeatures: [...GRID_CELL_FEATURES],
      ...(this.tokens === 'frame' ? { frameFeatures: [...GRID_FRAME_FEATURES] } : { positionFeatures: ['col', 'row'] }),
    };
  }

  async encode(frames: Uint8Array[], frameSize: number): Promise<Float32Array> {
    return this.encodeSync(frames, frameSize);
  }

  /** Same as `encode`, synchronously. */
  encodeSync(frames: Uint8Array[], frameSize: number): Float32Array {
    const perFrame = this.tokensPerFrame * this.featureDim;
    const out = new Float32Array(frames.length * perFrame);
    frames.forEach((frame, i) => {
      if (frame.length !== frameSize * frameSize * 3) {
        throw new RpvError(`encoder ${this.id}: frame ${i} has ${frame.length} bytes, expected ${frameSize}x${frameSize}x3 = ${frameSize * frameSize * 3}`);
      }
      this.encodeFrame(frame, frameSize, out.subarray(i * perFrame, (i + 1) * perFrame));
    });
    return out;
  }

  /** Which implementation computes the per-frame sums (the features are the same either way). */
  get kernel(): 'native' | 'js' {
    return this.native ? 'native' : 'js';
  }

  /**
   * One frame: the exact integer sums (native addon or `gridSumsJs`, identical), then the
   * features formed from them.
   */
  private encodeFrame(frame: Uint8Array, size: number, out: Float32Array): void {
    const G = this.cells;
    const nc = GRID_CELL_FEATURES.length;
    const sums = this.sumsBuffer();
    if (this.native) {
      // The addon wants a plain Uint8Array (a Buffer is one, but check the type exactly).
      const rgb = frame.constructor === Uint8Array ? frame : new Uint8Array(frame.buffer, frame.byteOffset, frame.length);
      this.native(rgb, size, G, sums);
    } else {
      gridSumsJs(frame, size, G, sums, this.scratch);
    }
    const f = 7 * G * G;
    const [mr, mg, mb] = [sums[f + 6]!, sums[f + 7]!, sums[f + 8]!];
    for (let cy = 0; cy < G; cy++) {
      const [y0, y1] = cellRange(cy, size, G);
      for (let cx = 0; cx < G; cx++) {
        const [x0, x1] = cellRange(cx, size, G);
        const cell = cy * G + cx;
        const s = cell * 7;
        const w = x1 - x0, h = y1 - y0;
        const count = w * h, nx = (w - 1) * h, ny = w * (h - 1);
        const meanR = sums[s]! / count, meanG = sums[s + 1]! / count, meanB = sums[s + 2]! / count;
        // Luma sums are of 1000 Y (exact integers): scaled back here.
        const meanL = sums[s + 3]! / count;
        const std = Math.sqrt(Math.max(0, sums[s + 4]! / count - meanL * meanL)) / 1000;
        const base = this.tokens === 'frame' ? cell * nc : cell * (nc + 2);
        out[base] = (meanR / 255) * 2 - 1;
        out[base + 1] = (meanG / 255) * 2 - 1;
        out[base + 2] = (meanB / 255) * 2 - 1;
        out[base + 3] = Math.min(1, std / 64);
        out[base + 4] = nx ? Math.min(1, sums[s + 5]! / 1000 / nx / 32) : 0;
        out[base + 5] = ny ? Math.min(1, sums[s + 6]! / 1000 / ny / 32) : 0;
        out[base + 6] = Math.min(1, (Math.abs(meanR - mr) + Math.abs(meanG - mg) + Math.abs(meanB - mb)) / 255);
        if (this.tokens === 'cell') {
          out[base + 7] = G === 1 ? 0 : (cx / (G - 1)) * 2 - 1;
          out[base + 8] = G === 1 ? 0 : (cy / (G - 1)) * 2 - 1;
        }
      }
    }
    if (this.tokens === 'frame') {
      const fgN = sums[f]!;
      const base = G * G * nc;
      const denom = Math.max(1, size - 1);
      out[base] = fgN ? (sums[f + 1]! / fgN / denom) * 2 - 1 : 0;
      out[base + 1] = fgN ? (sums[f + 2]! / fgN / denom) * 2 - 1 : 0;
      out[base + 2] = Math.sqrt(fgN / (size * size));
      out[base + 3] = fgN ? (sums[f + 3]! / fgN / 255) * 2 - 1 : 0;
      out[base + 4] = fgN ? (sums[f + 4]! / fgN / 255) * 2 - 1 : 0;
      out[base + 5] = fgN ? (sums[f + 5]! / fgN / 255) * 2 - 1 : 0;
    }
  }

  private sums: Float64Array | null = null;
  private readonly scratch = { luma: new Int32Array(0), hist: new Int32Array(768) };
  private sumsBuffer(): Float64Array {
    this.sums ??= new Float64Array(7 * this.cells * this.cells + 9);
    return this.sums;
  }
}

/** Rows (or columns) `[start, end)` of cell `c` of `G` along a side of `size` pixels. */
function cellRange(c: number, size: number, G: number): [number, number] {
  const start = Math.floor((c * size) / G);
  return [start, Math.min(size, Math.max(start + 1, Math.floor(((c + 1) * size) / G)))];
}

/** The native kernel when rpv's addon is built and has it (`RPV_GRID_KERNEL=js` turns it off). */
function nativeGridSums(kernel: GridKernel): GridSumsFn | null {
  if (kernel === 'js' || (kernel === 'auto' && process.env.RPV_GRID_KERNEL === 'js')) return null;
  const { addon, reason } = loadNativeAddon();
  const fn = addon?.gridSums;
  if (typeof fn === 'function') return fn.bind(addon);
  if (kernel === 'native') throw new RpvError(`encoder grid: the native kernel is unavailable (${reason ?? 'the addon predates gridSums: rebuild it with `node src/native/build.mjs`'})`);
  return null;
}

type GridSumsFn = (rgb: Uint8Array, size: number, cells: number, out: Float64Array) => void;

/**
 * The sums a grid-v1 frame's features are formed from, in plain JS; the layout is the native
 * kernel's (src/native/grid.cc): per cell (row-major) sum R, G, B, L, L^2, |dL/dx|, |dL/dy| with
 * L = 299 R + 587 G + 114 B (1000 x luma, an exact integer); then the foreground count and sums
 * of x, y, R, G, B; then the median colour. Every sum is an integer below 2^53 for cells of up
 * to 138,000 pixels (371 x 371), so this and the native kernel agree exactly; beyond that the
 * sum of L^2 may round in its last bits here.
 */
export function gridSumsJs(frame: Uint8Array, size: number, G: number, out: Float64Array, scratch = { luma: new Int32Array(0), hist: new Int32Array(768) }): void {
  const rgb = frame.constructor === Uint8Array ? frame : new Uint8Array(frame.buffer, frame.byteOffset, frame.length);
  const n = size * size;
  if (scratch.luma.length !== n) scratch.luma = new Int32Array(n);
  const Y = scratch.luma;
  const hist = scratch.hist;
  hist.fill(0);
  for (let i = 0, p = 0; i < n; i++, p += 3) {
    const r = rgb[p]!, g = rgb[p + 1]!, b = rgb[p + 2]!;
    hist[r]++;
    hist[256 + g]++;
    hist[512 + b]++;
    Y[i] = 299 * r + 587 * g + 114 * b;
  }
  const mr = medianOf(hist, 0, n), mg = medianOf(hist, 256, n), mb = medianOf(hist, 512, n);
  // Cells tile the frame exactly when size >= G; then the foreground is summed cell by cell.
  const tiled = size >= G;
  let fgN = 0, fgX = 0, fgY = 0, fgR = 0, fgG = 0, fgB = 0;
  for (let cy = 0; cy < G; cy++) {
    const [y0, y1] = cellRange(cy, size, G);
    for (let cx = 0; cx < G; cx++) {
      const [x0, x1] = cellRange(cx, size, G);
      let sr = 0, sg = 0, sb = 0, sl = 0, sl2 = 0, ex = 0, ey = 0;
      for (let y = y0; y < y1; y++) {
        const row = y * size;
        for (let i = row + x0, p = 3 * i, end = row + x1; i < end; i++, p += 3) {
          const r = rgb[p]!, g = rgb[p + 1]!, b = rgb[p + 2]!;
          const l = Y[i]!;
          sr += r; sg += g; sb += b; sl += l; sl2 += l * l;
          if (tiled && Math.abs(r - mr) + Math.abs(g - mg) + Math.abs(b - mb) > FOREGROUND_THRESHOLD) {
            fgN++; fgX += i - row; fgY += y; fgR += r; fgG += g; fgB += b;
          }
        }
        for (let i = row + x0, end = row + x1 - 1; i < end; i++) ex += Math.abs(Y[i + 1]! - Y[i]!);
        if (y + 1 < y1) for (let i = row + x0, end = row + x1; i < end; i++) ey += Math.abs(Y[i + size]! - Y[i]!);
      }
      const o = 7 * (cy * G + cx);
      out[o] = sr; out[o + 1] = sg; out[o + 2] = sb; out[o + 3] = sl; out[o + 4] = sl2; out[o + 5] = ex; out[o + 6] = ey;
    }
  }
  if (!tiled) {
    // Cells overlap (a frame smaller than the grid): the foreground pass over the frame itself.
    for (let y = 0, p = 0; y < size; y++) {
      for (let x = 0; x < size; x++, p += 3) {
        const r = rgb[p]!, g = rgb[p + 1]!, b = rgb[p + 2]!;
        if (Math.abs(r - mr) + Math.abs(g - mg) + Math.abs(b - mb) > FOREGROUND_THRESHOLD) {
          fgN++; fgX += x; fgY += y; fgR += r; fgG += g; fgB += b;
        }
      }
    }
  }
  const f = 7 * G * G;
  out[f] = fgN; out[f + 1] = fgX; out[f + 2] = fgY; out[f + 3] = fgR; out[f + 4] = fgG; out[f + 5] = fgB;
  out[f + 6] = mr; out[f + 7] = mg; out[f + 8] = mb;
}

/** Parse `grid` options from a spec tail like `cells=8,tokens=cell`. */
export function parseGridSpec(tail: string): GridEncoderOptions {
  const options: GridEncoderOptions = {};
  if (!tail) return options;
  for (const part of tail.split(',')) {
    const [key, value] = part.split('=', 2).map((s) => s.trim());
    if (key === 'cells') {
      const n = Number(value);
      if (!Number.isInteger(n)) throw new RpvError(`encoder grid: cells must be an integer, got "${value}"`);
      options.cells = n;
    } else if (key === 'tokens') {
      options.tokens = value as GridTokens;
    } else {
      throw new RpvError(`encoder grid: unknown option "${key}" in "grid:${tail}" (known: cells, tokens)`);
    }
  }
  return options;
}

/** The median of the `n` values counted in `hist[off .. off + 256)` (the lower median). */
function medianOf(hist: Int32Array, off: number, n: number): number {
  let acc = 0;
  for (let v = 0; v < 256; v++) {
    acc += hist[off + v]!;
    if (acc * 2 >= n) return v;
  }
  return 255;
}
