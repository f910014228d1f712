/**
 * Packing benchmark: trained tokens per second of whole optimizer steps (forward, backward, AdamW)
 * on a realistic length mix, the same samples arranged three ways (src/train/packing.ts):
 * padded loader batches (today's default), grouped by length, and packed rows.
 *
 *   npx tsx bench/packing.ts [--models small,qwen0.5b] [--windows N] [--threads N]
 *
 * Length mix: the MMRole-Data dialogues of test/fixtures/mmrole (216 samples, read by rpv's MMRole
 * importer, src/convert/formats/mmrole.ts), each turn's length in tokens taken as its characters /
 * 4 (an English BPE's average; the bench models' byte-level tokenizer would count bytes), the
 * profile capped at `profileCap` tokens as prompt.profile_max_tokens does, and a video of 4 or 16
 * frames (half each, seeded) of `tokensPerFrame` tokens plus a frame caption ("Frame 3 at
 * 2.5s:", 6 tokens). Loss on the role's turns. Samples longer than `maxTokens` are skipped, as the
 * trainer skips them. Order: a seeded shuffle, as the loader's.
 *
 * Models (Qwen2 layout, random weights, written into bench/data/packing/ if missing):
 *   small:    hidden 512, 4 layers, 8 heads (4 kv), LoRA r 8 on q, k, v, o; rows of 1024 tokens,
 *             batch 4, 2 micro-batches per step (windows of 8 samples); 8 tokens per frame
 *   qwen0.5b: Qwen2.5-0.5B's shapes and vocabulary (BF16, mapped, layers recomputed), LoRA r 16
 *             on all seven modules; rows of 768 tokens, batch 2, 4 micro-batches per step
 *             (windows of 8 samples); 4 tokens per frame
 * Each arrangement trains the same windows from the same weights, after one untimed warm-up step
 * per model on its two shortest samples.
 * Padded runs first and again last; ratios are against the faster of the two (the machine may be
 * shared). Figures: real tokens / s (text and video positions of the samples; padding not counted) and
 * target tokens / s, the padding share (1 - real / computed positions), and the ratio to padded.
 * One JSON line per model is appended to bench/results.jsonl.
 */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend.js';
import { loadModel } from '../src/model/load.js';
import { writeTinyModel } from '../src/model/tiny.js';
import { mmroleFormat } from '../src/convert/formats/mmrole.js';
import { AdamW } from '../src/train/adamw.js';
import { trainableParams } from '../src/train/bridge.js';
import { packBatch, type PackedBatch, type PreparedSample } from '../src/train/pack.js';
import { arrangeStep, type Arrangement } from '../src/train/packing.js';
import { optimizerStep } from '../src/train/step.js';
import { Rng, seededRandom } from '../src/util/random.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'test', 'fixtures', 'mmrole', 'reviews', 'gpt-4-turbo');
const FEATURE_DIM = 128;
const SYSTEM_TOKENS = 24;
const FRAME_TEXT_TOKENS = 6;

interface Shape {
  name: 'small' | 'qwen0.5b';
  tiny?: { hiddenSize: number; numLayers: number; numHeads: number; numKvHeads: number };
  lora: { rank: number; alpha: number; dropout: number; targetModules: string[]; seed: number };
  maxTokens: number;
  batch: number;
  accum: number;
  tokensPerFrame: number;
  profileCap: number;
}

const SHAPES: Record<string, Shape> = {
  small: {
    name: 'small',
    tiny: { hiddenSize: 512, numLayers: 4, numHeads: 8, numKvHeads: 4 },
    lora: { rank: 8, alpha: 16, dropout: 0, targetModules: ['q', 'k', 'v', 'o'], seed: 1 },
    maxTokens: 1024,
    batch: 4,
    accum: 2,
    tokensPerFrame: 8,
    profileCap: 128,
  },
  'qwen0.5b': {
    name: 'qwen0.5b',
    lora: { rank: 16, alpha: 32, dropout: 0, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 },
    maxTokens: 768,
    batch: 2,
    accum: 4,
    tokensPerFrame: 4,
    profileCap: 128,
  },
};

function parseArgs(argv: string[]) {
  const o = { models: ['small', 'qwen0.5b'], windows: 2, threads: undefined as number | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`packing: ${a} needs a value`);
    if (a === '--models') o.models = v.split(',');
    else if (a === '--windows') o.windows = Number(v);
    else if (a === '--threads') o.threads = Number(v);
    else throw new Error(`packing: unknown option ${a} (see the header of bench/packing.ts)`);
  }
  for (const m of o.models) if (!SHAPES[m]) throw new Error(`packing: unknown model ${m}; expected small or qwen0.5b`);
  if (!(Number.isInteger(o.windows) && o.windows >= 1)) throw new Error(`packing: --windows expects a positive integer, found ${o.windows}`);
  return o;
}

interface Dialogue {
  id: string;
  profileChars: number;
  turns: { chars: number; role: boolean }[];
}

/** The fixture's dialogues through the MMRole importer. */
async function readDialogues(): Promise<Dialogue[]> {
  const out: Dialogue[] = [];
  for (const split of ['comment', 'human-role', 'inter-role']) {
    const file = path.join(fixtures, `${split}_test.json`);
    for await (const item of mmroleFormat.read(file, { root: fixtures, missingMedia: 'text-only' } as { root: string })) {
      if (item.kind !== 'record') continue;
      const r = item.record;
      for (const d of r.dialogues) out.push({ id: d.id ?? `${r.role}-${out.length}`, profileChars: (r.profile ?? '').length, turns: d.turns.map((t) => ({ chars: t.text.length, role: t.speaker === r.role })) });
    }
  }
  return out;
}

/** Rendered-looking samples: random ids, `<video>` positions after the profile, loss on the role's turns. */
function samplesOf(dialogues: Dialogue[], s: Shape, videoTokenId: number): { samples: PreparedSample[]; tooLong: number } {
  const rng = seededRandom(7);
  const samples: PreparedSample[] = [];
  let tooLong = 0;
  for (const d of dialogues) {
    const frames = rng.next() < 0.5 ? 4 : 16;
    const profile = Math.min(s.profileCap, Math.ceil(d.profileChars / 4));
    const turns = d.turns.map((t) => ({ n: Math.max(1, Math.ceil(t.chars / 4)) + 4, role: t.role }));
    const n = SYSTEM_TOKENS + profile + frames * (s.tokensPerFrame + FRAME_TEXT_TOKENS) + turns.reduce((a, t) => a + t.n, 0);
    if (n > s.maxTokens) {
      tooLong += 1;
      continue;
    }
    const inputIds = Int32Array.from({ length: n }, () => 3 + Math.floor(rng.next() * 400));
    const lossMask = new Uint8Array(n);
    const videoPositions: number[] = [];
    let at = SYSTEM_TOKENS + profile;
    for (let f = 0; f < frames; f++) {
      at += FRAME_TEXT_TOKENS;
      for (let k = 0; k < s.tokensPerFrame; k++) videoPositions.push(at++);
    }
    for (const t of turns) {
      // The turn's header (4 tokens) is not trained; a role turn's text and end are.
      if (t.role) lossMask.fill(1, at + 4, at + t.n);
      at += t.n;
    }
    for (const p of videoPositions) inputIds[p] = videoTokenId;
    samples.push({
      sampleId: d.id,
      prompt: { inputIds, lossMask, focusMask: new Uint8Array(n), videoPositions: Int32Array.from(videoPositions), numFrames: frames, trainedTokens: lossMask.reduce((a, b) => a + b, 0) },
      frames: rng.normal(videoPositions.length * FEATURE_DIM, 1),
    });
  }
  return { samples: rng.shuffle(samples), tooLong };
}

function arrange(window: PreparedSample[], mode: Arrangement, s: Shape): PackedBatch[] {
  if (mode !== 'padded') return arrangeStep(window, mode, { batchSize: s.batch, maxTokens: s.maxTokens, featureDim: FEATURE_DIM });
  const out: PackedBatch[] = [];
  for (let i = 0; i < window.length; i += s.batch) out.push(packBatch(window.slice(i, i + s.batch), FEATURE_DIM));
  return out;
}

async function benchShape(s: Shape, dialogues: Dialogue[], windows: number) {
  const dir = path.join(here, 'data', 'packing', s.name, 'model');
  if (!existsSync(path.join(dir, 'config.json'))) {
    process.stdout.write(`writing the ${s.name} model into ${path.relative(process.cwd(), dir)}\n`);
    mkdirSync(dir, { recursive: true });
    await writeTinyModel(dir, s.tiny ? { ...s.tiny, seed: 11 } : { preset: 'qwen2.5-0.5b', seed: 11 });
  }
  const model = await loadModel(dir, { log: null });
  model.gradientCheckpointing = s.name === 'qwen0.5b';
  const { samples, tooLong } = samplesOf(dialogues, s, model.videoTokenId!);
  const per = s.batch * s.accum;
  const needed = windows * per;
  if (samples.length < needed) throw new Error(`packing: ${samples.length} samples fit ${s.maxTokens} tokens, ${needed} needed`);
  const lengths = samples.map((x) => x.prompt.inputIds.length).sort((a, b) => a - b);
  process.stdout.write(
    `\n${s.name}: ${samples.length} samples of the MMRole fixtures fit ${s.maxTokens} tokens (${tooLong} longer skipped); ` +
      `lengths min ${lengths[0]} median ${lengths[lengths.length >> 1]} max ${lengths[lengths.length - 1]}; ` +
      `steps of ${per} samples (batch ${s.batch} x ${s.accum} micro-batches), ${windows} timed\n`,
  );
  // Warm-up (untimed, once): a step on the two shortest samples, each arrangement's code paths.
  {
    model.addLora(s.lora);
    model.addProjector({ featureDim: FEATURE_DIM, seed: 2 });
    const params = trainableParams(model, { video: true });
    const optimizer = new AdamW(params);
    const shortest = [...samples].sort((a, b) => a.prompt.inputIds.length - b.prompt.inputIds.length).slice(0, 2);
    for (const mode of ['padded', 'packed'] as Arrangement[]) await optimizerStep(model, optimizer, params, arrange(shortest, mode, s), new Rng(1), 1, () => 1e-4);
    optimizer.dispose();
  }
  const rows: Record<string, unknown>[] = [];
  // Padded runs first and again last: on a shared machine the faster of the two is the baseline.
  for (const mode of ['padded', 'grouped', 'packed', 'padded'] as Arrangement[]) {
    // Same starting weights for every arrangement.
    model.addLora(s.lora);
    model.addProjector({ featureDim: FEATURE_DIM, seed: 2 });
    const params = trainableParams(model, { video: true });
    const optimizer = new AdamW(params);
    const rng = new Rng(3);
    const lrs = () => 1e-4;
    let sec = 0;
    let real = 0;
    let trained = 0;
    let positions = 0;
    let micro = 0;
    const losses: number[] = [];
    for (let w = 0; w < windows; w++) {
      const batches = arrange(samples.slice(w * per, (w + 1) * per), mode, s);
      const t0 = performance.now();
      const r = await optimizerStep(model, optimizer, params, batches, rng, 1, lrs);
      sec += (performance.now() - t0) / 1000;
      losses.push(r.loss);
      real += batches.reduce((n, m) => n + m.tokens, 0);
      trained += r.trainedTokens;
      positions += batches.reduce((n, m) => n + m.batch * m.seqLen, 0);
      micro += batches.length;

    }
    optimizer.dispose();
    const row = { mode, sec: +sec.toFixed(2), microBatches: micro, realTokens: real, trainedTokens: trained, positions, padding: +(1 - real / positions).toFixed(3), tokensPerSec: +(real / sec).toFixed(1), trainedPerSec: +(trained / sec).toFixed(1), firstLoss: losses[0] };
    rows.push(row);
    process.stdout.write(
      `  ${mode.padEnd(7)} ${String(micro).padStart(3)} micro-batches, ${positions} positions for ${real} tokens (padding ${(100 * row.padding).toFixed(1)}%): ` +
        `${sec.toFixed(1)} s, ${row.tokensPerSec} tokens/s, ${row.trainedPerSec} trained tokens/s` +
        (mode === 'padded' ? '' : ` (${(row.tokensPerSec / (rows[0]!.tokensPerSec as number)).toFixed(2)}x the first padded)`) +
        `; first loss ${losses[0]!.toFixed(6)}\n`,
    );
  }
  model.dispose();
  return { rows, samples: samples.length, tooLong };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const backend = await initBackend({ backend: 'wasm', threads: o.threads, log: null });
  const dialogues = await readDialogues();
  const load = os.loadavg()[0]!;
  process.stdout.write(`packing bench: ${dialogues.length} MMRole dialogues; wasm + native, ${backend.threads} threads; ${os.availableParallelism()} CPUs, 1-min load average ${load.toFixed(1)} at the start\n`);
  for (const m of o.models) {
    const s = SHAPES[m]!;
    const r = await benchShape(s, dialogues, o.windows);
    const padded = Math.max(r.rows[0]!.tokensPerSec as number, r.rows[3]!.tokensPerSec as number);
    process.stdout.write(`  ${m}: packed ${((r.rows[2]!.tokensPerSec as number) / padded).toFixed(2)}x, grouped ${((r.rows[1]!.tokensPerSec as number) / padded).toFixed(2)}x the faster padded run\n`);
    appendFileSync(
      path.join(here, 'results.jsonl'),
      `${JSON.stringify({ bench: 'packing', case: `packing-${m}`, model: m, maxTokens: s.maxTokens, batch: s.batch, accum: s.accum, windows: o.windows, samples: r.samples, tooLong: r.tooLong, arrangements: r.rows, packedVsPadded: +((r.rows[2]!.tokensPerSec as number) / padded).toFixed(2), groupedVsPadded: +((r.rows[1]!.tokensPerSec as number) / padded).toFixed(2), threads: backend.threads, cpus: os.availableParallelism(), loadavg1Start: +load.toFixed(1), loadavg1End: +os.loadavg()[0]!.toFixed(1), node: process.version, time: new Date().toISOString() })}\n`,
    );
  }
  process.stdout.write(`1-min load average at the end: ${os.loadavg()[0]!.toFixed(1)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
