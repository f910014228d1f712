/**
 * Vision tower throughput: frames/s and peak RSS of rpv's towers (`--encoder hf:`) beside the same
 * architecture in PyTorch, measured in the same run.
 *
 *   npx tsx bench/encode.ts [--models clip-b16,internvit-300m] [--dtype BF16] [--threads N]
 *
 * Models (random weights in the published config and tensor names, written by writeTinyTower into
 * bench/data/encode/ if missing; `rpv make-tiny-model --preset ...` writes the same):
 *   clip-b16:       CLIP ViT-B/16 at 224 px, default settings (layer -2, 196 patch tokens of 768),
 *                   batches of 4 frames;
 *   internvit-300m: InternViT-300M-448px, default settings (layer -1, pixel shuffle 0.5: 256
 *                   tokens of 4,096), batches of 1 frame;
 *   clip-tiny, internvit-tiny: the tiny test towers, to check the bench itself in seconds.
 * rpv encodes preprocessed pixels (the tower's `encode`, weights memory-mapped as stored) in a
 * child process of its own (bench/encode-child.mjs), so its peak RSS (VmHWM) is the tower's alone,
 * run as users run rpv: plain node on dist/ (`npm run build` first; a dist/ older than src/ is
 * refused), not under tsx, whose loader thread would add about 55 MB. The peer is PyTorch
 * (Debian's python3-torch on OpenBLAS, set up and verified as bench/train-step.ts does:
 * bench/torch-peer.ts) running bench/encode_torch.py, the towers written from the published
 * modelling files in float32 (weights converted once, as from_pretrained(torch_dtype=float32)),
 * with 1 thread and with N threads: the faster is the peer. rpv runs with N kernel threads
 * (`--threads`, default the cores; `--threads 1` compares one thread with one thread, the fairer
 * figure on a machine other jobs load, where a 2-thread run waits on its slower thread). Each figure is the median over the
 * timed batches after one warm-up batch. Correctness: both encode the same pixels; the smallest
 * cosine per token and the largest difference relative to the features' scale are printed (a
 * cosine under 0.999 fails the run). The cost of preprocessing a 1280x720 frame (PIL-exact
 * resize, crop, normalise; src/vision/preprocess.ts) is printed beside, per frame.
 * One JSON line per model is appended to bench/results.jsonl.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeTinyTower, type TowerFamily, type TinyTowerPreset } from '../src/vision/index.js';
import { preprocessFrame, resolvePreprocess } from '../src/vision/preprocess.js';
import { describePeer, ensurePeer, peerRecord, peerRefusal, SYSTEM_PYTHON, type PeerConfig } from './torch-peer.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dataRoot = path.join(here, 'data', 'encode');
const TORCH_ENCODE = path.join(here, 'encode_torch.py');

interface ModelSpec {
  name: string;
  family: TowerFamily;
  preset: TinyTowerPreset;
  batch: number;
  steps: number;
}

const MODELS: Record<string, ModelSpec> = {
  'clip-b16': { name: 'clip-b16', family: 'clip', preset: 'clip-vit-b16', batch: 4, steps: 3 },
  'internvit-300m': { name: 'internvit-300m', family: 'internvit', preset: 'internvit-300m', batch: 1, steps: 2 },
  // Seconds-long checks of the bench itself.
  'clip-tiny': { name: 'clip-tiny', family: 'clip', preset: 'tiny', batch: 4, steps: 3 },
  'internvit-tiny': { name: 'internvit-tiny', family: 'internvit', preset: 'tiny', batch: 4, steps: 3 },
};

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'clip-b16,internvit-300m' },
    dtype: { type: 'string', default: 'BF16' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
  },
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** The rpv side runs from dist/ (bench/encode-child.mjs): refuse a dist/ older than src/. */
function checkDistFresh(): void {
  const built = path.join(here, '..', 'dist', 'vision', 'index.js');
  if (!existsSync(built)) throw new Error('bench encode: dist/ is missing: run npm run build (rpv is measured as users run it, plain node on dist/)');
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((t, e) => Math.max(t, e.isDirectory() ? newest(path.join(dir, e.name)) : e.name.endsWith('.ts') ? statSync(path.join(dir, e.name)).mtimeMs : 0), 0);
  if (newest(path.join(here, '..', 'src')) > statSync(built).mtimeMs) throw new Error('bench encode: src/ is newer than dist/: run npm run build (rpv is measured as users run it, plain node on dist/)');
}

/** Preprocessing of one 1280x720 frame to the tower's input, ms (median of 5). */
function preprocessMs(folder: string, family: TowerFamily, imageSize: number): number {
  const config = existsSync(path.join(folder, 'preprocessor_config.json')) ? JSON.parse(readFileSync(path.join(folder, 'preprocessor_config.json'), 'utf8')) : {};
  const plan = resolvePreprocess(family, config, imageSize);
  const rgb = new Uint8Array(1280 * 720 * 3).map((_, i) => (i * 2654435761) >>> 24);
  const out = new Float32Array(3 * imageSize * imageSize);
  const ms: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    preprocessFrame(rgb, 1280, 720, plan, imageSize, out);
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

function compare(a: Float32Array, b: Float32Array, width: number): { minCosine: number; maxDiffRel: number } {
  let minCosine = 1;
  let maxAbs = 0;
  let maxDiff = 0;
  for (let t = 0; t < a.length / width; t++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = t * width; i < (t + 1) * width; i++) {
      ab += a[i]! * b[i]!;
      aa += a[i]! * a[i]!;
      bb += b[i]! * b[i]!;
      maxAbs = Math.max(maxAbs, Math.abs(b[i]!));
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    }
    minCosine = Math.min(minCosine, ab / Math.sqrt(aa * bb));
  }
  return { minCosine, maxDiffRel: maxDiff / maxAbs };
}

async function main(): Promise<void> {
  checkDistFresh();
  const threads = Number(args.threads);
  const dtype = args.dtype as 'F32' | 'BF16' | 'F16';
  const load = os.loadavg()[0]!;
  process.stdout.write(`encode benchmark, ${threads} threads, ${dtype} weights, machine ${load > 0.5 * os.availableParallelism() ? `under load (1-min load average ${load.toFixed(2)} on ${os.availableParallelism()} cores)` : 'quiet'}\n`);
  const setup = ensurePeer((line) => process.stdout.write(`${line}\n`));
  for (const name of args.models!.split(',')) {
    const m = MODELS[name];
    if (!m) throw new Error(`bench encode: unknown model ${name} (expected ${Object.keys(MODELS).join(', ')})`);
    const folder = path.join(dataRoot, `${m.family}-${m.preset}-${dtype}`);
    if (!existsSync(path.join(folder, 'config.json'))) {
      process.stdout.write(`  writing ${path.relative(process.cwd(), folder)} (random weights)\n`);
      await writeTinyTower(folder, { family: m.family, preset: m.preset, dtype, seed: 0 });
    }
    const config = JSON.parse(readFileSync(path.join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
    const vision = (config.vision_config ?? config) as { image_size: number; num_hidden_layers: number };
    const S = vision.image_size;
    mkdirSync(path.join(dataRoot, 'runs'), { recursive: true });
    const pixelsFile = path.join(dataRoot, 'runs', `${m.name}-pixels.f32`);
    // Pixels as a processor gives them: about N(0, 1) per channel, smooth enough to look like a picture.
    const pixels = new Float32Array(m.batch * 3 * S * S).map((_, i) => Math.sin(i * 0.001) + 0.5 * Math.sin(i * 0.37));
    writeFileSync(pixelsFile, new Uint8Array(pixels.buffer));
    // The tower's defaults: CLIP layer -2, InternViT layer -1 and pixel shuffle 0.5.
    const layer = m.family === 'clip' ? -2 : -1;
    const shuffle = m.family === 'internvit' ? 0.5 : 1;
    const base = { folder, family: m.family, pixels: pixelsFile, batch: m.batch, warmup: 1, steps: m.steps, layer, shuffle };

    const rpvSpecFile = path.join(dataRoot, 'runs', `${m.name}-rpv.json`);
    const rpvOut = path.join(dataRoot, 'runs', `${m.name}-rpv.f32`);
    writeFileSync(rpvSpecFile, JSON.stringify({ ...base, out: rpvOut, threads }));
    const child = spawnSync(process.execPath, [path.join(here, 'encode-child.mjs'), rpvSpecFile], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      env: { ...process.env, RPV_MATMUL_THREADS: String(threads) },
    });
    if (child.status !== 0) throw new Error(`bench encode: the rpv run of ${m.name} exited ${child.status}: ${child.stderr}`);
    const rpv = JSON.parse(child.stdout.trim().split('\n').pop()!) as { ms: number[]; tokensPerFrame: number; width: number; id: string; peakRssBytes: number };
    const rpvMsPerFrame = median(rpv.ms) / m.batch;
    process.stdout.write(`  ${m.name} rpv: ${(1000 / rpvMsPerFrame).toFixed(2)} frames/s (${rpvMsPerFrame.toFixed(0)} ms per frame), peak RSS ${(rpv.peakRssBytes / 2 ** 20).toFixed(0)} MiB; ${rpv.tokensPerFrame} x ${rpv.width} per frame\n`);

    const torchRuns: Array<{ threads: number; msPerFrame: number; peakRssBytes: number; peer: PeerConfig; features: Float32Array }> = [];
    let skipped: string | null = null;
    if ('missing' in setup) skipped = setup.missing;
    else {
      for (const t of [...new Set([1, threads])]) {
        const specFile = path.join(dataRoot, 'runs', `${m.name}-torch-${t}.json`);
        const out = path.join(dataRoot, 'runs', `${m.name}-torch-${t}.f32`);
        writeFileSync(specFile, JSON.stringify({ ...base, out, threads: t }));
        const env = { ...process.env, OPENBLAS_NUM_THREADS: String(t), OMP_NUM_THREADS: String(t), MKL_NUM_THREADS: String(t) };
        const line = execFileSync(SYSTEM_PYTHON, [TORCH_ENCODE, specFile], { encoding: 'utf8', env, maxBuffer: 1 << 24 }).trim().split('\n').pop()!;
        const r = JSON.parse(line) as { ms: number[]; peer: PeerConfig; maxRssKB: number };
        const msPerFrame = median(r.ms) / m.batch;
        const b = readFileSync(out);
        torchRuns.push({ threads: t, msPerFrame, peakRssBytes: r.maxRssKB * 1024, peer: r.peer, features: new Float32Array(b.buffer, b.byteOffset, b.length / 4) });
        process.stdout.write(`  ${m.name} ${describePeer(r.peer)}: ${(1000 / msPerFrame).toFixed(2)} frames/s (${msPerFrame.toFixed(0)} ms per frame), peak RSS ${(r.maxRssKB / 1024).toFixed(0)} MiB\n`);
      }
    }
    const best = torchRuns.length ? torchRuns.reduce((a, b) => (b.msPerFrame < a.msPerFrame ? b : a)) : null;
    const refused = best ? (peerRefusal(best.peer) ?? ('refused' in setup ? setup.refused : null)) : null;
    const rpvFeatures = (() => {
      const b = readFileSync(rpvOut);
      return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    })();
    const check = best ? compare(rpvFeatures, best.features, rpv.width) : null;
    const prepMs = preprocessMs(folder, m.family, S);
    if (best && check) {
      const timeRatio = rpvMsPerFrame / best.msPerFrame;
      const rssRatio = rpv.peakRssBytes / best.peakRssBytes;
      process.stdout.write(
        `  ${m.name}: rpv takes ${timeRatio.toFixed(2)}x PyTorch's time per frame (goal <= 1.0) in ${rssRatio.toFixed(2)}x its peak RSS (goal <= 0.5)` +
          `${refused ? ` [no ratio: ${refused}]` : ''}; features: min cosine per token ${check.minCosine.toFixed(6)}, max difference ${check.maxDiffRel.toExponential(2)} of the largest value\n`,
      );
    }
    process.stdout.write(`  ${m.name}: preprocessing a 1280x720 frame to ${S}x${S} (PIL-exact bicubic, crop, normalise): ${prepMs.toFixed(1)} ms\n`);
    const record = {
      bench: 'encode',
      case: m.name,
      dtype,
      batch: m.batch,
      threads,
      rpvFramesPerSec: 1000 / rpvMsPerFrame,
      rpvPeakRssMB: Math.round(rpv.peakRssBytes / 2 ** 20),
      torchFramesPerSec: best ? 1000 / best.msPerFrame : null,
      torchThreads: best?.threads ?? null,
      torchPeakRssMB: best ? Math.round(best.peakRssBytes / 2 ** 20) : null,
      timeRatio: best && !refused ? rpvMsPerFrame / best.msPerFrame : null,
      rssRatio: best && !refused ? rpv.peakRssBytes / best.peakRssBytes : null,
      minCosine: check?.minCosine ?? null,
      maxDiffRel: check?.maxDiffRel ?? null,
      preprocessMs1280x720: prepMs,
      encoder: rpv.id,
      ...(best ? peerRecord(best.peer) : { peer: null, peerSkipped: skipped }),
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? null,
      loadavg1: Number(os.loadavg()[0]!.toFixed(2)),
      node: process.version,
      time: new Date().toISOString(),
    };
    appendFileSync(path.join(here, 'results.jsonl'), `${JSON.stringify(record)}\n`);
    if (check && check.minCosine < 0.999) throw new Error(`bench encode: ${m.name}: rpv's features differ from PyTorch's (min cosine per token ${check.minCosine})`);
  }
}

await main();
