/**
 * `grid-v1`: the default frame encoder. No model, no randomness: a few colour, contrast and edge
 * statistics per cell of a G x G grid, plus a crude foreground summary (where and what colour
 * the pixels that differ from the frame's dominant colour are). Specified in
 * `src/features/README.md`; any change to the numbers bumps the version in the id.
 */
import { RpvError } from '../util/errors.js';
import type { EncoderDescription, FrameEncoder } from './encoder.js';

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
}

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

  constructor({ cells = 4, tokens = 'frame' }: GridEncoderOptions = {}) {
    if (!(Number.isInteger(cells) && cells >= 1 && cells <= 32)) throw new RpvError(`encoder grid: cells must be an integer from 1 to 32, got ${cells}`);
    if (tokens !== 'frame' && tokens !== 'cell') throw new RpvError(`encoder grid: tokens must be "frame" or "cell", got ${String(tokens)}`);
    this.cells = cells;
    this.tokens = tokens;
    const nc = GRID_CELL_FEATURES.length;
    this.tokensPerFrame = tokens === 'frame' ? 1 : cells * cells;
    this.featureDim = tokens === 'frame' ? cells * cells * nc + GRID_FRAME_FEATURES.length : nc + 2;
    this.id = `grid-v${GRID_VERSION}:cells=${cells},tokens=${tokens}`;
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

  private encodeFrame(rgb: Uint8Array, size: number, out: Float32Array): void {
    const G = this.cells;
    const nc = GRID_CELL_FEATURES.length;
    const [mr, mg, mb] = medianColour(rgb);
    // One pass: luma of every pixel, and the foreground summary over the whole frame.
    const Y = this.lumaBuffer(size * size);
    let fgN = 0, fgX = 0, fgY = 0, fgR = 0, fgG = 0, fgB = 0;
    for (let y = 0, i = 0; y < size; y++) {
      for (let x = 0; x < size; x++, i++) {
        const p = i * 3;
        const r = rgb[p]!, g = rgb[p + 1]!, b = rgb[p + 2]!;
        Y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
        if (Math.abs(r - mr) + Math.abs(g - mg) + Math.abs(b - mb) > FOREGROUND_THRESHOLD) {
          fgN++; fgX += x; fgY += y; fgR += r; fgG += g; fgB += b;
        }
      }
    }
    for (let cy = 0; cy < G; cy++) {
      const y0 = Math.floor((cy * size) / G), y1 = Math.min(size, Math.max(y0 + 1, Math.floor(((cy + 1) * size) / G)));
      for (let cx = 0; cx < G; cx++) {
        const x0 = Math.floor((cx * size) / G), x1 = Math.min(size, Math.max(x0 + 1, Math.floor(((cx + 1) * size) / G)));
        let n = 0, sr = 0, sg = 0, sb = 0, sl = 0, sl2 = 0, ex = 0, nx = 0, ey = 0, ny = 0;
        for (let y = y0; y < y1; y++) {
          const row = y * size;
          for (let x = x0; x < x1; x++) {
            const i = row + x;
            const p = i * 3;
            const l = Y[i]!;
            n++; sr += rgb[p]!; sg += rgb[p + 1]!; sb += rgb[p + 2]!; sl += l; sl2 += l * l;
            if (x + 1 < x1) {
              ex += Math.abs(Y[i + 1]! - l);
              nx++;
            }
            if (y + 1 < y1) {
              ey += Math.abs(Y[i + size]! - l);
              ny++;
            }
          }
        }
        const meanR = sr / n, meanG = sg / n, meanB = sb / n, meanL = sl / n;
        const std = Math.sqrt(Math.max(0, sl2 / n - meanL * meanL));
        const cell = cy * G + cx;
        const base = this.tokens === 'frame' ? cell * nc : cell * (nc + 2);
        out[base] = (meanR / 255) * 2 - 1;
        out[base + 1] = (meanG / 255) * 2 - 1;
        out[base + 2] = (meanB / 255) * 2 - 1;
        out[base + 3] = Math.min(1, std / 64);
        out[base + 4] = nx ? Math.min(1, ex / nx / 32) : 0;
        out[base + 5] = ny ? Math.min(1, ey / ny / 32) : 0;
        out[base + 6] = Math.min(1, (Math.abs(meanR - mr) + Math.abs(meanG - mg) + Math.abs(meanB - mb)) / 255);
        if (this.tokens === 'cell') {
          out[base + 7] = G === 1 ? 0 : (cx / (G - 1)) * 2 - 1;
          out[base + 8] = G === 1 ? 0 : (cy / (G - 1)) * 2 - 1;
        }
      }
    }
    if (this.tokens === 'frame') {
      const base = G * G * nc;
      const denom = Math.max(1, size - 1);
      out[base] = fgN ? (fgX / fgN / denom) * 2 - 1 : 0;
      out[base + 1] = fgN ? (fgY / fgN / denom) * 2 - 1 : 0;
      out[base + 2] = Math.sqrt(fgN / (size * size));
      out[base + 3] = fgN ? (fgR / fgN / 255) * 2 - 1 : 0;
      out[base + 4] = fgN ? (fgG / fgN / 255) * 2 - 1 : 0;
      out[base + 5] = fgN ? (fgB / fgN / 255) * 2 - 1 : 0;
    }
  }

  private luma: Float64Array = new Float64Array(0);
  /** A reused scratch buffer for one frame's luma. */
  private lumaBuffer(n: number): Float64Array {
    if (this.luma.length !== n) this.luma = new Float64Array(n);
    return this.luma;
  }
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

/** Per-channel median of a frame: its dominant (background) colour for frames with one. */
function medianColour(rgb: Uint8Array): [number, number, number] {
  const hist = new Uint32Array(768);
  const n = rgb.length / 3;
  for (let p = 0; p < rgb.length; p += 3) {
    hist[rgb[p]!] += 1;
    hist[256 + rgb[p + 1]!] += 1;
    hist[512 + rgb[p + 2]!] += 1;
  }
  const med = (off: number) => {
    let acc = 0;
    for (let v = 0; v < 256; v++) {
      acc += hist[off + v]!;
      if (acc * 2 >= n) return v;
    }
    return 255;
  };
  return [med(0), med(256), med(512)];
}
