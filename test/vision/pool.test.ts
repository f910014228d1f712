// pool=N on any patch grid, as PyTorch's avg_pool2d(kernel N, stride N, ceil_mode=True,
// count_include_pad=False): a 7x7 grid of known values pooled by 3; tiny SigLIP and InternViT
// towers whose grid is odd (28 px, patch 4: 7x7) against a float64 reference written here, on the
// native kernels and on tfjs alone; SigLIP so400m's geometry (384 px, patch 14: 27x27) giving
// 14x14 = 196 tokens with pool=2; the token count through convert, index.json and --dry-run on a
// lossless clip; and pixel shuffle still refusing an odd grid, naming it and suggesting pool.
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertExport, dryRun, initBackend, parseRecipe } from '../../src/index.js';
import { extractFrames } from '../../src/media/extract.js';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { writeTinyModel } from '../../src/model/tiny.js';
import { Mulberry32 } from '../../src/util/random.js';
import { averagePool, loadVisionTower, writeTinyTower, type TowerFamily, type TowerSettings } from '../../src/vision/index.js';
import { readAllRows, run, tempDir, writeAnnotations } from '../convert/fixtures.js';
import { readWeights, referenceHiddenStates, referencePixelShuffle, type RefConfig } from './tower-reference.js';

const root = tempDir('rpv-pool-');
const ODD = { image_size: 28, patch_size: 4 }; // a 7x7 patch grid

/**
 * torch.nn.functional.avg_pool2d(x, kernel_size=n, stride=n, ceil_mode=True, count_include_pad=False)
 * on a [g, g, D] grid (channels last), written from its definition: ceil((g - n) / n) + 1 =
 * ceil(g / n) windows per side, each the mean of the cells it covers inside the grid.
 */
function referenceAvgPool(x: Float64Array, g: number, D: number, n: number): { out: Float64Array; side: number } {
  const side = Math.ceil((g - n) / n) + 1;
  const out = new Float64Array(side * side * D);
  for (let oy = 0; oy < side; oy++) {
    for (let ox = 0; ox < side; ox++) {
      const ys = Array.from({ length: n }, (_, i) => oy * n + i).filter((y) => y < g);
      const xs = Array.from({ length: n }, (_, i) => ox * n + i).filter((xx) => xx < g);
      for (let d = 0; d < D; d++) {
        let sum = 0;
        for (const y of ys) for (const xx of xs) sum += x[(y * g + xx) * D + d];
        out[(oy * side + ox) * D + d] = sum / (ys.length * xs.length);
      }
    }
  }
  return { out, side };
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

function refConfig(family: TowerFamily): RefConfig {
  const act = family === 'siglip' ? 'gelu_pytorch_tanh' : 'gelu';
  return { family: family as RefConfig['family'], hidden: 32, heads: 4, layers: 3, image: 28, patch: 4, eps: 1e-6, act };
}

/** Features of one frame from its float64 hidden states: patches of `layer`, pooled, then shuffled. */
function referenceOdd(family: TowerFamily, states: Float64Array[], layer: number, pool: number, shuffle: number): Float64Array {
  const D = 32;
  const g = 7;
  const state = states[layer < 0 ? states.length + layer : layer]!;
  const patches = state.slice(family === 'siglip' ? 0 : D);
  const { out, side } = referenceAvgPool(patches, g, D, pool);
  return shuffle === 1 ? out : referencePixelShuffle(out, 1, side, side, D, shuffle);
}

describe('averagePool on a grid the window does not divide', () => {
  it('pools a 7x7 grid by 3 into 3x3, the last row and column averaging the cells they cover', () => {
    // Two frames of two channels: 10 * row + column, and 1 everywhere (the mean of ones is 1 only
    // when a partial window is divided by the cells it covers); the second frame negated.
    const x = new Float32Array(2 * 7 * 7 * 2);
    for (let f = 0; f < 2; f++) {
      for (let r = 0; r < 7; r++) {
        for (let c = 0; c < 7; c++) {
          const i = ((f * 7 + r) * 7 + c) * 2;
          x[i] = (f === 0 ? 1 : -1) * (10 * r + c);
          x[i + 1] = f === 0 ? 1 : -1;
        }
      }
    }
    const out = averagePool(x, 2, 7, 7, 2, 3);
    expect(out.length).toBe(2 * 3 * 3 * 2);
    // Windows cover rows (and columns) 0-2, 3-5 and 6: means 1, 4 and 6.
    const want = [11, 14, 16, 41, 44, 46, 61, 64, 66];
    expect(Array.from(out.filter((_, i) => i % 2 === 0))).toEqual([...want, ...want.map((v) => -v)]);
    expect(Array.from(out.filter((_, i) => i % 2 === 1))).toEqual([...want.map(() => 1), ...want.map(() => -1)]);
    // The corner is the single cell (6, 6); the right edge of the middle row the 3x1 cells (3..5, 6).
    expect(out[(2 * 3 + 2) * 2]).toBe(66);
    expect(out[(1 * 3 + 2) * 2]).toBe((36 + 46 + 56) / 3);
  });

  it('pools a grid smaller than the window to one cell, the mean of all (as avg_pool2d with ceil_mode)', () => {
    const x = Float32Array.from({ length: 9 }, (_, i) => i);
    expect(Array.from(averagePool(x, 1, 3, 3, 1, 4))).toEqual([4]);
  });

  it('matches the float64 avg_pool2d reference on random values for grids 1..9 and windows 1..4', () => {
    const rng = new Mulberry32(11);
    for (let g = 1; g <= 9; g++) {
      for (let n = 1; n <= 4; n++) {
        const x = rng.normal(g * g * 3, 1);
        const { out, side } = referenceAvgPool(Float64Array.from(x), g, 3, n);
        expect(side).toBe(Math.ceil(g / n));
        expect(relErr(averagePool(x, 1, g, g, 3, n), out), `grid ${g}, pool ${n}`).toBeLessThan(1e-6);
      }
    }
  });
});

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`towers with an odd patch grid (7x7) on ${backend === 'wasm' ? 'the native kernels (wasm, mapped weights)' : 'tfjs alone (cpu backend)'}`, () => {
    const FRAMES = 2;
    const pixels = new Mulberry32(9).normal(FRAMES * 3 * 28 * 28, 1);
    const cases: Array<{ family: TowerFamily; settings: TowerSettings; layer: number; pool: number; shuffle: number; tokens: number; width: number }> = [
      { family: 'siglip', settings: { pool: 2 }, layer: -1, pool: 2, shuffle: 1, tokens: 16, width: 32 },
      { family: 'siglip', settings: { pool: 3, layer: -2 }, layer: -2, pool: 3, shuffle: 1, tokens: 9, width: 32 },
      { family: 'siglip', settings: { pool: 8 }, layer: -1, pool: 8, shuffle: 1, tokens: 1, width: 32 },
      // Pooled 7x7 -> 4x4, then pixel-shuffled to 2x2 tokens of 4 x 32.
      { family: 'internvit', settings: { pool: 2 }, layer: -1, pool: 2, shuffle: 0.5, tokens: 4, width: 128 },
    ];
    const states: Partial<Record<TowerFamily, Float64Array[][]>> = {};
    const dirs: Partial<Record<TowerFamily, string>> = {};
    beforeAll(async () => {
      await initBackend({ backend, log: null });
      for (const family of ['siglip', 'internvit'] as const) {
        const dir = path.join(root, `odd-${family}-${backend}`);
        await writeTinyTower(dir, { family, preset: 'tiny', seed: 4, overrides: ODD });
        const weights = await readWeights(path.join(dir, 'model.safetensors'));
        dirs[family] = dir;
        states[family] = Array.from({ length: FRAMES }, (_, f) => referenceHiddenStates(refConfig(family), weights, pixels.subarray(f * 3 * 784, (f + 1) * 3 * 784)));
      }
    }, 60_000);

    for (const c of cases) {
      it(`${c.family} #${JSON.stringify(c.settings)}: ${c.tokens} token(s) of ${c.width}, equal to the float64 reference`, async () => {
        const tower = await loadVisionTower(dirs[c.family]!, c.settings, { weights: backend === 'wasm' ? 'mapped' : 'tensors' });
        try {
          expect([tower.tokensPerFrame, tower.width]).toEqual([c.tokens, c.width]);
          const got = await tower.encode(pixels, FRAMES);
          const per = c.tokens * c.width;
          expect(got.length).toBe(FRAMES * per);
          for (let f = 0; f < FRAMES; f++) {
            const want = referenceOdd(c.family, states[c.family]![f]!, c.layer, c.pool, c.shuffle);
            expect(relErr(got.subarray(f * per, (f + 1) * per), want)).toBeLessThan(1e-4);
          }
        } finally {
          await tower.dispose();
        }
      });
    }
  });
}

describe('pool and shuffle at load', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', log: null });
  });

  it("SigLIP so400m's geometry (384 px, patch 14: 27x27 patches) with pool=2 gives 14x14 = 196 tokens per frame", async () => {
    const dir = path.join(root, 'siglip-27');
    await writeTinyTower(dir, { family: 'siglip', preset: 'tiny', overrides: { image_size: 384, patch_size: 14 } });
    for (const [pool, tokens] of [[1, 729], [2, 196], [3, 81], [4, 49]] as const) {
      const tower = await loadVisionTower(dir, { pool });
      expect(tower.tokensPerFrame, `pool=${pool}`).toBe(tokens);
      expect(tower.id).toMatch(new RegExp(`^hf:siglip/siglip_vision_model#layer=-1,tokens=patches,pool=${pool},shuffle=1@[0-9a-f]{16}$`));
      await tower.dispose();
    }
  });

  it('pixel shuffle refuses an odd grid, naming it and suggesting pool', async () => {
    const siglip = path.join(root, 'refuse-siglip');
    const internvit = path.join(root, 'refuse-internvit');
    await writeTinyTower(siglip, { family: 'siglip', preset: 'tiny', overrides: ODD });
    await writeTinyTower(internvit, { family: 'internvit', preset: 'tiny', overrides: { image_size: 24, patch_size: 2 } });
    await expect(loadVisionTower(siglip, { shuffle: 0.5 })).rejects.toThrow(
      `hf:${siglip}: shuffle=0.5 needs a patch grid that is a multiple of 2 (InternVL's pixel shuffle moves each 2x2 block of patches into one token), ` +
        'found 7x7; use pool=2,shuffle=1 instead (average pooling takes any grid: 7x7 patches to 4x4 tokens of 32)',
    );
    // InternViT's default shuffle=0.5 on a 12x12 grid pooled by 4 to 3x3.
    await expect(loadVisionTower(internvit, { pool: 4 })).rejects.toThrow(
      `hf:${internvit}: shuffle=0.5 needs a patch grid that is a multiple of 2 (InternVL's pixel shuffle moves each 2x2 block of patches into one token), ` +
        'found 3x3 (the 12x12 patch grid after pool=4); use pool=8,shuffle=1 instead (average pooling takes any grid: 12x12 patches to 2x2 tokens of 32)',
    );
  });
});

describe('rpv convert with pool on an odd grid', () => {
  it('stores 4x4 = 16 tokens per frame of a 7x7 SigLIP tower with pool=2, equal to the float64 reference; index.json and --dry-run say 16', async () => {
    const tower = path.join(root, 'convert-siglip');
    await writeTinyTower(tower, { family: 'siglip', preset: 'tiny', seed: 6, overrides: ODD });
    // A lossless (x264 qp 0, 4:4:4) clip at the model's size: frames reach the tower unresampled.
    const exportDir = path.join(root, 'export28');
    await fs.mkdir(path.join(exportDir, 'videos'), { recursive: true });
    const { ffmpegPath } = await resolveFfmpeg();
    const clip = path.join(exportDir, 'videos', 'v28.mp4');
    await run(ffmpegPath, ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=28x28:rate=10:duration=2', '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '0', '-pix_fmt', 'yuv444p', clip]);
    await writeAnnotations(exportDir, [
      {
        id: 'v28',
        video: 'videos/v28.mp4',
        role: 'Mei',
        profile: 'Mei likes colours.',
        dialogues: [0, 1].map((d) => ({ id: `v28-d${d}`, turns: [{ speaker: 'user', text: `What colour is it? (${d})` }, { speaker: 'Mei', text: `It is red, ${d}.` }] })),
      },
    ]);
    const out = path.join(root, 'shards28');
    const summary = await convertExport({ input: exportDir, out, encoder: `hf:${tower}#pool=2`, dtype: 'float32', maxFrames: 2, minFrames: 2 });
    const index = summary.index!;
    expect(index.schema).toMatchObject({ tokensPerFrame: 16, featureDim: 32 });
    expect(index.encoder).toMatchObject({ tokensPerFrame: 16, featureDim: 32, settings: { layer: -1, tokens: 'patches', pool: 2, shuffle: 1 } });
    expect(index.encoder.id).toMatch(/^hf:siglip\/siglip_vision_model#layer=-1,tokens=patches,pool=2,shuffle=1@[0-9a-f]{16}$/);
    const [row] = await readAllRows(out);
    expect(row!.frames.length).toBe(2 * 16 * 32);

    // The same frames decoded at their size, normalised with SigLIP's mean and std (0.5) as numpy's float32 steps.
    const frames = await extractFrames(clip, Array.from(row!.frame_times), { frameSize: 28, native: true });
    const weights = await readWeights(path.join(tower, 'model.safetensors'));
    frames.forEach((rgb, f) => {
      const pixels = new Float32Array(3 * 784);
      for (let c = 0; c < 3; c++) for (let p = 0; p < 784; p++) pixels[c * 784 + p] = Math.fround(Math.fround(Math.fround(rgb[p * 3 + c]! * (1 / 255)) - 0.5) / 0.5);
      const want = referenceOdd('siglip', referenceHiddenStates(refConfig('siglip'), weights, pixels), -1, 2, 1);
      expect(relErr(row!.frames.subarray(f * 512, (f + 1) * 512), want)).toBeLessThan(1e-4);
    });

    const model = path.join(root, 'lm');
    await writeTinyModel(model, { hiddenSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, seed: 3 });
    const recipe = parseRecipe(
      readFileSync(path.join(import.meta.dirname, '../../recipes/demo.yaml'), 'utf8'),
      [`output_dir=${path.join(root, 'dry')}`, `model.path=${model}`, 'model.backend=wasm', `data.shards=${out}`, 'data.batch_size=1', 'data.workers=0'],
      'recipes/demo.yaml',
    );
    const text = await dryRun(recipe);
    expect(text).toContain('16 token(s) per frame; encoder hf:siglip/');
    expect(text).toContain('video: 16 token(s) per frame x up to 2 frames = up to 32 video tokens');
  }, 120_000);
});

afterAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});
