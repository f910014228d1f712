import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEncoder, probeVideo } from '../../src/index.js';
import { GridEncoder } from '../../src/features/grid.js';
import { extractFrames } from '../../src/media/extract.js';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { sampleFrameTimes } from '../../src/media/sampling.js';
import { GRID_CELL_FEATURES, GRID_FRAME_FEATURES, gridSumsJs } from '../../src/features/grid.js';
import { loadNativeAddon } from '../../src/native/addon.js';
import { buildClipArgs } from '../../src/demo/sample-export.js';
import { ffmpeg } from '../media/helpers.js';

const SIZE = 32;
const NC = GRID_CELL_FEATURES.length;
const FG = 4 * 4 * NC; // offset of the foreground summary in a 4x4 frame token
const fg = (out: Float32Array, frame: number, name: (typeof GRID_FRAME_FEATURES)[number]) => out[frame * (FG + 6) + FG + GRID_FRAME_FEATURES.indexOf(name)]!;

/** A SIZE x SIZE frame of `bg` with an 8x8 square of `colour` whose top-left corner is (x, y). */
function frame(bg: number[], colour: number[], x: number, y: number): Uint8Array {
  const f = new Uint8Array(SIZE * SIZE * 3);
  for (let py = 0; py < SIZE; py++) {
    for (let px = 0; px < SIZE; px++) {
      const inside = px >= x && px < x + 8 && py >= y && py < y + 8;
      f.set(inside ? colour : bg, (py * SIZE + px) * 3);
    }
  }
  return f;
}

const BLACK = [16, 16, 16];
const RED = [220, 30, 30];
const BLUE = [30, 80, 220];

describe('grid-v1 encoder', () => {
  it('has a versioned id, documented dims, and is the default', async () => {
    const enc = await createEncoder('grid');
    expect(enc.id).toBe('grid-v1:cells=4,tokens=frame');
    expect([enc.tokensPerFrame, enc.featureDim]).toEqual([1, 4 * 4 * 7 + 6]);
    expect(enc.describe()).toMatchObject({ kind: 'grid', version: 1, cells: 4, tokens: 'frame', featureDim: 118, tokensPerFrame: 1 });
    const cell = await createEncoder('grid:cells=2,tokens=cell');
    expect([cell.id, cell.tokensPerFrame, cell.featureDim]).toEqual(['grid-v1:cells=2,tokens=cell', 4, 9]);
    await expect(createEncoder('grid:size=3')).rejects.toThrow('encoder grid: unknown option "size" in "grid:size=3" (known: cells, tokens)');
    await expect(createEncoder('grid:cells=0')).rejects.toThrow('encoder grid: cells must be an integer from 1 to 32, got 0');
  });

  it('is deterministic and checks frame sizes', async () => {
    const enc = new GridEncoder();
    const frames = [frame(BLACK, RED, 3, 5), frame(BLACK, BLUE, 20, 9)];
    const a = await enc.encode(frames, SIZE);
    const b = await new GridEncoder().encode(frames.map((f) => f.slice()), SIZE);
    expect(b).toEqual(a);
    expect(a).toHaveLength(2 * 118);
    for (const v of a) expect(Math.abs(v)).toBeLessThanOrEqual(1);
    await expect(enc.encode([new Uint8Array(10)], SIZE)).rejects.toThrow('encoder grid-v1:cells=4,tokens=frame: frame 0 has 10 bytes, expected 32x32x3 = 3072');
  });

  it('computes the values the README specifies (hand-worked 4x4 frame, 2x2 cells)', async () => {
    // Left half black, right half white; the median colour is black, so white is foreground.
    const f = new Uint8Array(4 * 4 * 3);
    for (let y = 0; y < 4; y++) for (let x = 2; x < 4; x++) f.fill(255, (y * 4 + x) * 3, (y * 4 + x) * 3 + 3);
    const out = Array.from(await new GridEncoder({ cells: 2 }).encode([f], 4));
    const black = [-1, -1, -1, 0, 0, 0, 0];
    const white = [1, 1, 1, 0, 0, 0, 1];
    const expected = [...black, ...white, ...black, ...white, 2.5 / 3 * 2 - 1, 0, Math.sqrt(0.5), 1, 1, 1];
    expect(out).toHaveLength(expected.length);
    out.forEach((v, i) => expect([i, v]).toEqual([i, expect.closeTo(expected[i]!, 6)]));
    // One 2x2 cell, left column black, right white: mean 127.5 -> 0; luma std 127.5 -> 1;
    // |dY| = 255 across columns -> edge_x 1, none down the rows -> edge_y 0; salience vs the
    // median (black) 382.5 / 255 -> 1.
    const g = new Uint8Array(2 * 2 * 3);
    g.fill(255, 3, 6);
    g.fill(255, 9, 12);
    const one = await new GridEncoder({ cells: 1 }).encode([g], 2);
    expect(Array.from(one.subarray(0, 7))).toEqual([0, 0, 0, 1, 1, 0, 1]);
  });

  it('gives the same features from the native kernel and from JS, to the bit', async () => {
    const { addon, reason } = loadNativeAddon();
    if (!addon) {
      // Without a compiler the addon is not built; CI builds it (npm ci runs the install script).
      console.warn(`grid native kernel not checked: ${reason}`);
      return;
    }
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
    for (const size of [1, 3, 7, 32, 61, 224]) {
      // Noise, a flat frame with a square (long runs), and black/white speckle.
      const frames = [0, 1, 2].map((kind) => {
        const f = new Uint8Array(size * size * 3);
        for (let i = 0; i < f.length; i++) f[i] = kind === 0 ? rnd() : kind === 1 ? (i % 3) * 70 + ((i / 3) % size > size / 2 ? 100 : 0) : (rnd() & 1) * 255;
        return f;
      });
      for (const cells of [1, 2, 4, 5, 32]) {
        for (const tokens of ['frame', 'cell'] as const) {
          const js = new GridEncoder({ cells, tokens, kernel: 'js' }).encodeSync(frames, size);
          const native = new GridEncoder({ cells, tokens, kernel: 'native' }).encodeSync(frames, size);
          expect([size, cells, tokens, Buffer.from(native.buffer).equals(Buffer.from(js.buffer))]).toEqual([size, cells, tokens, true]);
        }
        const a = new Float64Array(7 * cells * cells + 9);
        const b = new Float64Array(7 * cells * cells + 9);
        gridSumsJs(frames[0]!, size, cells, a);
        addon.gridSums!(frames[0]!, size, cells, b);
        expect(Array.from(b)).toEqual(Array.from(a));
      }
    }
    expect(() => addon.gridSums!(new Uint8Array(10), 4, 2, new Float64Array(37))).toThrow('rgb must hold size * size * 3 bytes');
    expect(() => addon.gridSums!(new Uint8Array(48), 4, 2, new Float64Array(3))).toThrow('out must hold 7 * cells^2 + 9 numbers');
    expect(new GridEncoder().kernel).toBe('native');
  });

  it('separates colours and positions of a shape', async () => {
    const enc = new GridEncoder();
    const xs = [0, 6, 12, 18, 24];
    const right = await enc.encode(xs.map((x) => frame(BLACK, RED, x, 12)), SIZE);
    const xsOut = xs.map((_, i) => fg(right, i, 'fg_x'));
    for (let i = 1; i < xs.length; i++) expect(xsOut[i]).toBeGreaterThan(xsOut[i - 1]! + 0.2);
    const ys = xs.map((_, i) => fg(right, i, 'fg_y'));
    for (const y of ys) expect(y).toBeCloseTo(ys[0]!, 6);
    // The shape's colour, not the background's.
    expect(fg(right, 0, 'fg_r')).toBeGreaterThan(0.6);
    expect(fg(right, 0, 'fg_b')).toBeLessThan(-0.6);
    const blue = await enc.encode([frame(BLACK, BLUE, 0, 12)], SIZE);
    expect(fg(blue, 0, 'fg_b')).toBeGreaterThan(0.6);
    expect(fg(blue, 0, 'fg_r')).toBeLessThan(-0.6);
    // The most salient cell is the one holding the square (top-left at 24,0 -> cell row 0, col 3).
    const corner = await enc.encode([frame(BLACK, RED, 24, 0)], SIZE);
    const salience = Array.from({ length: 16 }, (_, c) => corner[c * NC + GRID_CELL_FEATURES.indexOf('salience')]!);
    expect(salience.indexOf(Math.max(...salience))).toBe(3);
    // Cell tokens carry their own position.
    const cells = await new GridEncoder({ tokens: 'cell' }).encode([frame(BLACK, RED, 24, 0)], SIZE);
    expect(Array.from(cells.subarray(3 * 9 + 7, 3 * 9 + 9))).toEqual([1, -1]);
  });
});

describe('grid-v1 on sample clips', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-grid-'));
    await resolveFfmpeg();
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('shows the direction and colour of the moving shape over sampled frames', async () => {
    const enc = new GridEncoder();
    const clips = [
      { colour: 'red', direction: 'right', shape: 'square', background: 'black', durationSec: 6, hasAudio: false },
      { colour: 'blue', direction: 'up', shape: 'bar', background: 'white', durationSec: 9, hasAudio: false },
      { colour: 'yellow', direction: 'left', shape: 'square', background: 'gray', durationSec: 5, hasAudio: false },
    ] as const;
    for (const clip of clips) {
      const file = path.join(dir, `${clip.direction}.mp4`);
      await ffmpeg(buildClipArgs(clip, file).slice(5));
      const { durationSec } = await probeVideo(file);
      const frames = await extractFrames(file, sampleFrameTimes(durationSec), { frameSize: 64 });
      const feats = await enc.encode(frames, 64);
      const n = frames.length;
      const first = { x: fg(feats, 0, 'fg_x'), y: fg(feats, 0, 'fg_y') };
      const last = { x: fg(feats, n - 1, 'fg_x'), y: fg(feats, n - 1, 'fg_y') };
      const moved = { right: last.x - first.x, left: first.x - last.x, up: first.y - last.y, down: last.y - first.y }[clip.direction];
      expect([clip.direction, moved > 0.8]).toEqual([clip.direction, true]);
      const [r, g, b] = [fg(feats, 0, 'fg_r'), fg(feats, 0, 'fg_g'), fg(feats, 0, 'fg_b')];
      const colour = r > 0.3 && g > 0.3 ? 'yellow' : r > g && r > b ? 'red' : b > g ? 'blue' : 'green';
      expect(colour).toBe(clip.colour);
    }
  });
});
