/**
 * `rpv convert --encoder hf:<folder>#...` end to end with the tiny towers of each family: the
 * features in the shards are the tower's on the decoded frames (a frame at the model's size is
 * not resampled), a 448x336 frame is resized and cropped as the processor does, the demo recipe
 * trains on the shards (projector input = the tower's width), and a run refuses shards of
 * another encoder, naming both.
 */
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertExport, dryRun, parseRecipe, train } from '../../src/index.js';
import { extractFrames } from '../../src/media/extract.js';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { writeTinyModel } from '../../src/model/tiny.js';
import { loadVisionTower, writeTinyTower, type TowerFamily } from '../../src/vision/index.js';
import { cli, readAllRows, run, tempDir, writeAnnotations } from '../convert/fixtures.js';
import { readWeights, referenceFeatures, referenceHiddenStates, type RefConfig } from './tower-reference.js';

const root = tempDir('rpv-hf-convert-');
const towers: Record<TowerFamily, string> = { clip: '', siglip: '', internvit: '' };
const FAMILIES = ['clip', 'siglip', 'internvit'] as const;

/** A lossless (x264 qp 0, 4:4:4) 2 s clip of moving colour at `w x h`. */
async function losslessClip(file: string, w: number, h: number): Promise<void> {
  const { ffmpegPath } = await resolveFfmpeg();
  await run(ffmpegPath, ['-v', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=10:duration=2`, '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '0', '-pix_fmt', 'yuv444p', file]);
}

/** An rpv export of one video per entry, two dialogues each. */
async function exportOf(dir: string, videos: Array<{ id: string; file: string }>): Promise<string> {
  await fs.mkdir(path.join(dir, 'videos'), { recursive: true });
  const records = [];
  for (const [i, v] of videos.entries()) {
    await fs.copyFile(v.file, path.join(dir, 'videos', `${v.id}.mp4`));
    records.push({
      id: v.id,
      video: `videos/${v.id}.mp4`,
      role: 'Mei',
      profile: 'Mei likes colours.',
      dialogues: [0, 1].map((d) => ({ id: `${v.id}-d${d}`, turns: [{ speaker: 'user', text: `What colour is it? (${i}.${d})` }, { speaker: 'Mei', text: `It is red and blue, ${d}.` }] })),
    });
  }
  await writeAnnotations(dir, records);
  return dir;
}

function cosine(a: Float32Array | Float64Array, b: Float32Array | Float64Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

const clip32 = path.join(root, 'clip32.mp4');
const clip448 = path.join(root, 'clip448x336.mp4');

beforeAll(async () => {
  for (const family of FAMILIES) {
    towers[family] = path.join(root, `tiny-${family}`);
    await writeTinyTower(towers[family], { family, preset: 'tiny', seed: 5 });
  }
  await losslessClip(clip32, 32, 32);
  await losslessClip(clip448, 448, 336);
}, 60_000);

describe('rpv convert --encoder hf:', () => {
  const settingsCases: Array<[TowerFamily, string]> = [
    ['clip', ''],
    ['clip', 'layer=-1'],
    ['clip', 'layer=-1,tokens=cls'],
    ['clip', 'tokens=mean'],
    ['clip', 'pool=2'],
    ['siglip', ''],
    ['siglip', 'layer=-2,tokens=mean'],
    ['siglip', 'pool=2'],
    ['internvit', 'shuffle=0.5'],
    ['internvit', 'layer=-2,shuffle=0.5'],
    ['internvit', 'layer=-1,tokens=cls,shuffle=1'],
    ['internvit', 'layer=-2,tokens=patches,shuffle=1,pool=2'],
  ];
  const exportDir = path.join(root, 'export32');
  beforeAll(async () => {
    await exportOf(exportDir, [{ id: 'v32', file: clip32 }]);
  });

  for (const [family, settings] of settingsCases) {
    it(`stores the ${family} tower's features of the decoded frames (${settings || 'defaults'}), unresampled at the model's size`, async () => {
      const spec = `hf:${towers[family]}${settings ? `#${settings}` : ''}`;
      const out = path.join(root, `out-${family}-${settings.replace(/[^a-z0-9]/gi, '')}`);
      const summary = await convertExport({ input: exportDir, out, encoder: spec, dtype: 'float32', maxFrames: 4, minFrames: 2 });
      const [row] = await readAllRows(out);
      const tower = await loadVisionTower(towers[family], (await import('../../src/vision/index.js')).parseTowerSettings(settings));
      try {
        expect(summary.index!.encoder.id).toBe(tower.id);
        expect(summary.index!.encoder.id).toMatch(/@[0-9a-f]{16}$/);
        expect(summary.index!.schema).toMatchObject({ tokensPerFrame: tower.tokensPerFrame, featureDim: tower.width });
        // The same frames decoded at their size, normalised with the folder's mean and std only.
        const frames = await extractFrames(path.join(exportDir, 'videos/v32.mp4'), Array.from(row!.frame_times), { frameSize: 32, native: true });
        const pre = tower.preprocessor;
        const mean = (pre.image_mean as number[]) ?? [0.485, 0.456, 0.406];
        const std = (pre.image_std as number[]) ?? [0.229, 0.224, 0.225];
        const S = tower.imageSize;
        const pixels = new Float32Array(frames.length * 3 * S * S);
        frames.forEach((f, i) => {
          for (let c = 0; c < 3; c++) for (let p = 0; p < S * S; p++) {
            // numpy's float32 steps, as transformers' rescale and normalize take them.
            pixels[(i * 3 + c) * S * S + p] = Math.fround(Math.fround(Math.fround(f[p * 3 + c]! * (1 / 255)) - Math.fround(mean[c]!)) / Math.fround(std[c]!));
          }
        });
        const direct = await tower.encode(pixels, frames.length);
        expect(row!.frames.length).toBe(direct.length);
        expect(Array.from(row!.frames)).toEqual(Array.from(direct));
      } finally {
        await tower.dispose();
      }
    }, 60_000);
  }

  it('rpv make-tiny-model --preset siglip-tiny then rpv convert --encoder "hf:<folder>#pool=2", as a user would', async () => {
    const dir = path.join(root, 'cli-siglip');
    const made = await cli(['make-tiny-model', dir, '--preset', 'siglip-tiny']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain(`wrote ${dir}: siglip vision tower (siglip-tiny), 3 layers, hidden 32, image 32 px, patch 8`);
    const out = path.join(root, 'cli-siglip-shards');
    const converted = await cli(['convert', exportDir, '--out', out, '--encoder', `hf:${dir}#pool=2`, '--min-frames', '2', '--max-frames', '2']);
    expect(converted.code, converted.stderr).toBe(0);
    expect(converted.stdout).toMatch(/schema {4}4 token\(s\) x 32 dims per frame, float16; encoder hf:siglip\/siglip_vision_model#layer=-1,tokens=patches,pool=2,shuffle=1@[0-9a-f]{16}/);
  }, 60_000);

  it('resizes and crops a 448x336 frame as the processor does: cosine >= 0.999 per token against a float64 resize', async () => {
    const dir = await exportOf(path.join(root, 'export448'), [{ id: 'v448', file: clip448 }]);
    for (const family of FAMILIES) {
      const out = path.join(root, `out448-${family}`);
      await convertExport({ input: dir, out, encoder: `hf:${towers[family]}`, dtype: 'float32', maxFrames: 2, minFrames: 2 });
      const [row] = await readAllRows(out);
      const tower = await loadVisionTower(towers[family], {});
      try {
        const frames = await extractFrames(path.join(dir, 'videos/v448.mp4'), Array.from(row!.frame_times), { frameSize: 32, native: true });
        const S = tower.imageSize;
        const pixels = new Float32Array(frames.length * 3 * S * S);
        frames.forEach((f, i) => pixels.set(referencePixels(family, f, 448, 336, S), i * 3 * S * S));
        const direct = await tower.encode(pixels, frames.length);
        const per = tower.width;
        let worst = 1;
        for (let t = 0; t < direct.length / per; t++) worst = Math.min(worst, cosine(row!.frames.subarray(t * per, (t + 1) * per), direct.subarray(t * per, (t + 1) * per)));
        expect(worst, family).toBeGreaterThanOrEqual(0.999);
      } finally {
        await tower.dispose();
      }
    }
  }, 120_000);
});

/**
 * The processors written from their documentation, in float64 without PIL's fixed point or
 * uint8 rounding: bicubic (a = -0.5) with the support widened by the scale when shrinking;
 * CLIP: shortest edge to S then centre crop; SigLIP and InternVL: straight to S x S.
 */
function referencePixels(family: TowerFamily, rgb: Uint8Array, w: number, h: number, S: number): Float32Array {
  const cubic = (x: number) => {
    x = Math.abs(x);
    return x < 1 ? 1.5 * x ** 3 - 2.5 * x ** 2 + 1 : x < 2 ? -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2 : 0;
  };
  const weights = (n: number, m: number) =>
    Array.from({ length: m }, (_, o) => {
      const scale = n / m;
      const fs = Math.max(1, scale);
      const centre = (o + 0.5) * scale;
      const row = new Float64Array(n);
      let total = 0;
      for (let i = 0; i < n; i++) total += row[i] = cubic((i + 0.5 - centre) / fs);
      return row.map((v) => v / total);
    });
  let [rw, rh] = [S, S];
  if (family === 'clip') [rw, rh] = w <= h ? [S, Math.trunc((S * h) / w)] : [Math.trunc((S * w) / h), S];
  const wx = weights(w, rw);
  const wy = weights(h, rh);
  const top = Math.floor((rh - S) / 2);
  const left = Math.floor((rw - S) / 2);
  const mean = family === 'clip' ? [0.48145466, 0.4578275, 0.40821073] : family === 'siglip' ? [0.5, 0.5, 0.5] : [0.485, 0.456, 0.406];
  const std = family === 'clip' ? [0.26862954, 0.26130258, 0.27577711] : family === 'siglip' ? [0.5, 0.5, 0.5] : [0.229, 0.224, 0.225];
  const out = new Float32Array(3 * S * S);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        let v = 0;
        const ky = wy[top + y]!;
        const kx = wx[left + x]!;
        for (let j = 0; j < h; j++) {
          if (ky[j] === 0) continue;
          let r = 0;
          for (let i = 0; i < w; i++) if (kx[i] !== 0) r += kx[i]! * rgb[(j * w + i) * 3 + c]!;
          v += ky[j]! * r;
        }
        out[c * S * S + y * S + x] = (Math.min(255, Math.max(0, v)) / 255 - mean[c]!) / std[c]!;
      }
    }
  }
  return out;
}

describe('training on tower features', () => {
  const shards: Record<TowerFamily, string> = { clip: '', siglip: '', internvit: '' };
  const model = path.join(root, 'lm');
  const demoRecipe = (family: TowerFamily, out: string, extra: string[] = []) =>
    parseRecipe(
      readFileSync(path.join(import.meta.dirname, '../../recipes/demo.yaml'), 'utf8'),
      [`output_dir=${out}`, `model.path=${model}`, 'model.backend=wasm', `data.shards=${shards[family]}`, 'data.batch_size=4', 'data.workers=0',
        'train.max_steps=2', 'eval.every_steps=0', 'checkpoint.every_steps=1', ...extra],
      'recipes/demo.yaml',
    );
  beforeAll(async () => {
    const { writeSampleExport } = await import('../../src/demo/sample-export.js');
    const exportDir = path.join(root, 'sample');
    await writeSampleExport(exportDir, { clips: 4, dialoguesPerClip: 3, seed: 3 });
    for (const family of FAMILIES) {
      shards[family] = path.join(root, `sample-${family}`);
      await convertExport({ input: exportDir, out: shards[family], encoder: `hf:${towers[family]}`, maxFrames: 4 });
    }
    await writeTinyModel(model, { hiddenSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, seed: 3 });
  }, 120_000);

  for (const family of FAMILIES) {
    it(`the demo recipe trains on ${family} shards, its projector taking the tower's width`, async () => {
      const index = await readShardIndex(shards[family]);
      const out = path.join(root, `run-${family}`);
      const result = await train(demoRecipe(family, out), { progressStream: null, log: () => {} });
      expect(result.losses).toHaveLength(2);
      for (const loss of result.losses) expect(Number.isFinite(loss)).toBe(true);
      const { readCheckpoint } = await import('../../src/train/checkpoint.js');
      const ckpt = await readCheckpoint(result.checkpoint!);
      expect(ckpt.trainable.get('projector.0.weight')!.shape[0]).toBe(index.schema.featureDim);
      expect(ckpt.state.encoder).toBe(index.encoder.id);
    }, 120_000);
  }

  it('gives the same features with 1 worker and with 2, and with --part', async () => {
    const exportDir = path.join(root, 'sample');
    const one = path.join(root, 'sample-clip-1w');
    await convertExport({ input: exportDir, out: one, encoder: `hf:${towers.clip}`, maxFrames: 4, workers: 1 });
    const rows = (dir: string) => readAllRows(dir).then((r) => new Map(r.map((x) => [x.video_id, Array.from(x.frames)])));
    const want = await rows(shards.clip);
    expect(await rows(one)).toEqual(want);
    const part = path.join(root, 'sample-clip-part');
    const summary = await convertExport({ input: exportDir, out: part, encoder: `hf:${towers.clip}`, maxFrames: 4, part: '1/2' });
    for (const [id, frames] of await rows(part)) expect(frames).toEqual(want.get(id));
    const again = await convertExport({ input: exportDir, out: part, encoder: `hf:${towers.clip}`, maxFrames: 4, part: '1/2', resume: true });
    expect(again.index!.encoder.id).toBe(summary.index!.encoder.id);
  }, 120_000);

  it('--dry-run shows the tokens per frame and the video\'s share of max_tokens', async () => {
    const text = await dryRun(demoRecipe('internvit', path.join(root, 'dry')));
    // Tiny InternViT: 4x4 patches pixel-shuffled to 4 tokens of 128; the sample export's videos have 4 frames at most here.
    expect(text).toContain('4 token(s) per frame; encoder hf:internvit/');
    expect(text).toContain('video: 4 token(s) per frame x up to 4 frames = up to 16 video tokens, 3.1% of prompt.max_tokens 512');
  }, 60_000);

  it('refuses to resume a run on shards of another encoder, naming both', async () => {
    const run = path.join(root, 'run-clip');
    const clipId = (await readShardIndex(shards.clip)).encoder.id;
    const siglipId = (await readShardIndex(shards.siglip)).encoder.id;
    await expect(train(demoRecipe('siglip', path.join(root, 'run-mixed'), [`resume=${run}`, 'train.max_steps=3']), { progressStream: null, log: () => {} })).rejects.toThrow(
      `train --resume: ${path.join(run, 'checkpoints', 'step-000002')} was trained on features of encoder ${clipId}, but ${shards.siglip} holds features of encoder ${siglipId}; convert the videos with the run's encoder or start a new run`,
    );
  }, 60_000);

  it('generate --video encodes with the run\'s tower and settings, and refuses another', async () => {
    const { encoderSpecOf, videoFeatures } = await import('../../src/infer/generate.js');
    const index = await readShardIndex(shards.clip);
    const [row] = await readAllRows(shards.clip);
    const file = path.join(root, 'sample', 'videos', `${row!.video_id}.mp4`);
    const v = await videoFeatures(file, index.sampling, encoderSpecOf(index), index.encoder.id);
    expect(Array.from(v.frameTimes)).toEqual(Array.from(row!.frame_times));
    // The shards hold float16: equal to the fresh float32 features within float16 rounding.
    for (let i = 0; i < v.features.length; i++) expect(Math.abs(v.features[i]! - row!.frames[i]!)).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(v.features[i]!)));
    const siglipId = (await readShardIndex(shards.siglip)).encoder.id;
    await expect(videoFeatures(file, index.sampling, `hf:${towers.siglip}`, index.encoder.id)).rejects.toThrow(
      `generate: the run was trained on features of encoder ${index.encoder.id}, but hf:${towers.siglip} is encoder ${siglipId}; pass the run's encoder with --encoder`,
    );
  }, 60_000);

  it('rpv convert --help documents each hf: setting', async () => {
    const { stdout } = await cli(['convert', '--help']);
    for (const s of ['hf:<folder>[#key=value,...]', 'layer=-1|-2|N', 'tokens=patches|cls|mean', 'pool=N', 'shuffle=0.5', '#layer=-1,tokens=cls', '#pool=2']) expect(stdout).toContain(s);
  }, 60_000);
});
