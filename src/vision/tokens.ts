/**
 * From a tower's hidden state to a frame's features, on plain arrays: which tokens
 * (`patches` / `cls` / `mean`), N x N average pooling of the patch grid (LLaVA-OneVision's 2x2),
 * and InternVL's pixel shuffle (ps_version v2).
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
  if (h % k !== 0 || w % k !== 0) throw new RpvError(`shuffle=${scale}: the patch grid ${h}x${w} is not a multiple of ${k}`);
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

/** x [frames, h, w, C] -> [frames, h/n, w/n, C], each the mean of an n x n block. */
export function averagePool(x: Float32Array, frames: number, h: number, w: number, C: number, n: number): Float32Array {
  if (h % n !== 0 || w % n !== 0) throw new RpvError(`pool=${n}: the patch grid ${h}x${w} is not a multiple of ${n}`);
  const oh = h / n;
  const ow = w / n;
  const out = new Float32Array(frames * oh * ow * C);
  const acc = new Float64Array(C);
  let o = 0;
  for (let f = 0; f < frames; f++) {
    for (let r = 0; r < oh; r++) {
      for (let c = 0; c < ow; c++) {
        acc.fill(0);
        for (let dr = 0; dr < n; dr++) {
          for (let dc = 0; dc < n; dc++) {
            const src = (((f * h + n * r + dr) * w) + n * c + dc) * C;
            for (let ch = 0; ch < C; ch++) acc[ch] += x[src + ch];
          }
        }
        for (let ch = 0; ch < C; ch++) out[o++] = acc[ch] / (n * n);
      }
    }
  }
  return out;
}
