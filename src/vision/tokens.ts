/**
 * From a tower's hidden state to a frame's features, on plain arrays: which tokens
 * (`patches` / `cls` / `mean`), N x N average pooling of the patch grid (LLaVA-OneVision's 2x2;
 * any grid, the last windows partial), and InternVL's pixel shuffle (ps_version v2; a grid that
 * is a multiple of 1/s only).
 *
 * Pixel shuffle with scale s = 1/k, as InternVL's `pixel_shuffle` followed by its reshape to
 * tokens (a [h, w, C] grid, rows first): the output is a [h/k, w/k, k*k*C] grid with
 *   out[r, c, (dr * k + dc) * C + ch] = in[k r + dr, k c + dc, ch],
 * i.e. each output token holds its k x k neighbourhood, row by row, channels innermost.
 */
import { RpvError } from '../util/errors.js';

/** x [frames, h, w, C] -> [frames, h/k, w/k, k*k*C] (k = 1/scale). */
export function pixelShuffle(x: Float32Array, frames: number, h: number, w: number, C: number, scale: number): Float32Array {
  const k = Math.round(1 / scale);
  if (h % k !== 0 || w % k !== 0) throw new RpvError(`shuffle=${scale}: the patch grid ${h}x${w} is not a multiple of ${k} (pixel shuffle moves whole ${k}x${k} blocks; averagePool takes any grid)`);
  const oh = h / k;
  const ow = w / k;
  const out = new Float32Array(x.length);
  let o = 0;
  for (let f = 0; f < frames; f++) {
    for (let r = 0; r < oh; r++) {
      for (let c = 0; c < ow; c++) {
        for (let dr = 0; dr < k; dr++) {
          for (let dc = 0; dc < k; dc++) {
            const src = (((f * h + k * r + dr) * w) + k * c + dc) * C;
            out.set(x.subarray(src, src + C), o);
            o += C;
          }
        }
      }
    }
  }
  return out;
}

/**
 * x [frames, h, w, C] -> [frames, ceil(h/n), ceil(w/n), C]: N x N average pooling of any grid, as
 * PyTorch's `avg_pool2d(kernel_size=n, stride=n, ceil_mode=True, count_include_pad=False)`. Output
 * cell (r, c) is the mean of the input cells in rows n r .. min(n r + n, h) - 1 and columns
 * n c .. min(n c + n, w) - 1: where n does not divide the grid, the last row and column of
 * windows cover fewer cells and are divided by how many they cover (SigLIP so400m's 27x27 grid
 * with n = 2: 14x14, the last row of windows 1x2 cells, the corner 1x1). Sums in float64, in
 * window order (rows, then columns), so a grid n divides gives what it always gave.
 */
export function averagePool(x: Float32Array, frames: number, h: number, w: number, C: number, n: number): Float32Array {
  if (!Number.isInteger(n) || n < 1) throw new RpvError(`pool=${n}: the window must be a whole number of patches >= 1`);
  if (x.length !== frames * h * w * C) throw new RpvError(`pool=${n}: ${x.length} values are not ${frames} frames of a ${h}x${w} grid of ${C}`);
  const oh = Math.ceil(h / n);
  const ow = Math.ceil(w / n);
  const out = new Float32Array(frames * oh * ow * C);
  const acc = new Float64Array(C);
  let o = 0;
  for (let f = 0; f < frames; f++) {
    for (let r = 0; r < oh; r++) {
      const r0 = n * r;
      const r1 = Math.min(r0 + n, h);
      for (let c = 0; c < ow; c++) {
        const c0 = n * c;
        const c1 = Math.min(c0 + n, w);
        acc.fill(0);
        for (let y = r0; y < r1; y++) {
          for (let xc = c0; xc < c1; xc++) {
            const src = ((f * h + y) * w + xc) * C;
            for (let ch = 0; ch < C; ch++) acc[ch] += x[src + ch];
          }
        }
        const count = (r1 - r0) * (c1 - c0);
        for (let ch = 0; ch < C; ch++) out[o++] = acc[ch] / count;
      }
    }
  }
  return out;
}
