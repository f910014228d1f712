/**
 * A vision tower's forward pass: patch embedding (the Conv2d as a linear over flattened patches),
 * class token and position embeddings, CLIP's pre-LayerNorm, then the shared encoder block
 * (src/model/block.ts) up to the selected hidden state only, then the token settings
 * (tokens.ts). Inference only (no tape); frames go through in chunks to bound memory.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import type { BlockWeights, NormWeights } from '../model/block.js';
import { applyNorm, encoderBlock } from '../model/block.js';
import type { FrozenLinear } from '../model/frozen.js';
import { RpvError } from '../util/errors.js';
import { gridSize, type TowerConfig } from './family.js';
import { averagePool, pixelShuffle } from './tokens.js';
import type { TowerSettings } from './types.js';

export interface TowerWeights {
  /** [width, 3 * P * P] over patches flattened channel-major (c, y, x), as Conv2d's weight is stored. */
  patch: FrozenLinear;
  /** [width] (class-token families). */
  classToken?: tfc.Tensor2D;
  /** [positions, width]. */
  positions: tfc.Tensor2D;
  preNorm?: NormWeights;
  blocks: BlockWeights[];
}

/** hidden_states index (0 = embeddings, i = after block i) from a `layer` setting. */
export function resolveLayer(layer: number, numLayers: number, where: string): number {
  const index = layer < 0 ? numLayers + 1 + layer : layer;
  if (index < 0 || index > numLayers) {
    throw new RpvError(`${where}: layer=${layer} is outside the tower's hidden states (0..${numLayers}, or -1..-${numLayers + 1})`);
  }
  return index;
}

/** The side of a g x g grid after pool=n: ceil(g / n), as avg_pool2d with ceil_mode (tokens.ts). */
export function pooledGrid(g: number, n: number): number {
  return Math.ceil(g / n);
}

/** Tokens per frame and values per token after the settings. */
export function outputShape(c: TowerConfig, s: Required<TowerSettings>, where: string): { tokens: number; width: number } {
  const grid = gridSize(c);
  if (s.tokens !== 'patches') {
    if (s.pool !== 1 || s.shuffle !== 1) throw new RpvError(`${where}: pool and shuffle apply to tokens=patches only (found tokens=${s.tokens}, pool=${s.pool}, shuffle=${s.shuffle})`);
    if (s.tokens === 'cls' && !c.classToken) throw new RpvError(`${where}: tokens=cls: ${c.family} has no class token (use tokens=mean)`);
    return { tokens: 1, width: c.hiddenSize };
  }
  // Pooling takes any grid (avg_pool2d with ceil_mode: the last windows partial); pixel shuffle
  // moves whole k x k blocks of patches into one token, so it needs a multiple of k.
  const pooled = pooledGrid(grid, s.pool);
  const k = Math.round(1 / s.shuffle);
  if (pooled % k !== 0) {
    const found = s.pool === 1 ? `${grid}x${grid}` : `${pooled}x${pooled} (the ${grid}x${grid} patch grid after pool=${s.pool})`;
    const pool = s.pool * k;
    const suggested = pooledGrid(grid, pool);
    throw new RpvError(
      `${where}: shuffle=${s.shuffle} needs a patch grid that is a multiple of ${k} (InternVL's pixel shuffle moves each ${k}x${k} block of patches into one token), ` +
        `found ${found}; use pool=${pool},shuffle=1 instead (average pooling takes any grid: ${grid}x${grid} patches to ${suggested}x${suggested} tokens of ${c.hiddenSize})`,
    );
  }
  return { tokens: (pooled / k) ** 2, width: c.hiddenSize * k * k };
}

/**
 * pixels [frames, 3, S, S] -> patches [frames * grid², 3 * P * P], channel-major within a patch
 * (grid = floor(S / P): rows and columns past grid * P are not read, as a stride-P Conv2d).
 */
export function extractPatches(pixels: Float32Array, frames: number, size: number, patch: number): Float32Array {
  const grid = Math.floor(size / patch);
  const per = 3 * patch * patch;
  const out = new Float32Array(frames * grid * grid * per);
  let o = 0;
  for (let f = 0; f < frames; f++) {
    for (let gy = 0; gy < grid; gy++) {
      for (let gx = 0; gx < grid; gx++) {
        for (let ch = 0; ch < 3; ch++) {
          for (let y = 0; y < patch; y++) {
            const src = ((f * 3 + ch) * size + gy * patch + y) * size + gx * patch;
            out.set(pixels.subarray(src, src + patch), o);
            o += patch;
          }
        }
      }
    }
  }
  return out;
}

/** Runs `frames` frames through the tower; returns [frames, tokens, width]. */
export async function runTower(tf: typeof tfc, c: TowerConfig, w: TowerWeights, s: Required<TowerSettings>, pixels: Float32Array, frames: number): Promise<Float32Array> {
  const grid = gridSize(c);
  const N = grid * grid;
  const T = N + (c.classToken ? 1 : 0);
  const D = c.hiddenSize;
  const depth = resolveLayer(s.layer, c.numLayers, c.family);
  let hidden = tf.tidy(() => {
    const patches = tf.tensor2d(extractPatches(pixels, frames, c.imageSize, c.patchSize), [frames * N, 3 * c.patchSize ** 2]);
    let x: tfc.Tensor = tf.reshape(w.patch.forward(patches), [frames, N, D]);
    if (w.classToken) x = tf.concat([tf.tile(tf.reshape(w.classToken, [1, 1, D]), [frames, 1, 1]), x], 1);
    x = tf.reshape(tf.add(x, w.positions), [frames * T, D]);
    return (w.preNorm ? applyNorm(tf, x, w.preNorm) : x) as tfc.Tensor2D;
  });
  // One tidy per block: only one block's intermediates exist at a time.
  for (let i = 0; i < depth; i++) {
    const input = hidden;
    hidden = tf.tidy(() => encoderBlock(tf, input, w.blocks[i], { batch: frames, tokens: T, heads: c.numHeads, headDim: c.headDim, act: c.act }));
    input.dispose();
  }
  // Asynchronous read: synchronous reads throw on the WebGPU backend under Node.
  const all = (await hidden.data()) as Float32Array;
  hidden.dispose();
  const first = c.classToken ? 1 : 0;
  if (s.tokens === 'cls') {
    const out = new Float32Array(frames * D);
    for (let f = 0; f < frames; f++) out.set(all.subarray(f * T * D, f * T * D + D), f * D);
    return out;
  }
  if (s.tokens === 'mean') {
    const out = new Float32Array(frames * D);
    const acc = new Float64Array(D);
    for (let f = 0; f < frames; f++) {
      acc.fill(0);
      for (let t = first; t < T; t++) for (let d = 0; d < D; d++) acc[d] += all[(f * T + t) * D + d];
      for (let d = 0; d < D; d++) out[f * D + d] = acc[d] / N;
    }
    return out;
  }
  let patches: Float32Array = new Float32Array(frames * N * D);
  for (let f = 0; f < frames; f++) patches.set(all.subarray((f * T + first) * D, (f + 1) * T * D), f * N * D);
  let g = grid;
  if (s.pool !== 1) {
    patches = averagePool(patches, frames, g, g, D, s.pool);
    g = pooledGrid(g, s.pool);
  }
  if (s.shuffle !== 1) patches = pixelShuffle(patches, frames, g, g, D, s.shuffle);
  return patches;
}
