/**
 * Packing benchmark: trained tokens per second of whole optimizer steps (forward, backward, AdamW)
 * on a realistic length mix, the same samples arranged several ways (src/train/packing.ts):
 * padded loader batches of 1, 2 or 4 dialogues (today's default: the real-scale recipe,
 * recipes/qwen2.5-0.5b-video60k.yaml, trains batch 1 x 32 micro-batches), grouped by length, and
 * packed rows.
 *
 *   npx tsx bench/packing.ts [--models small,qwen0.5b] [--windows N] [--threads N] [--plan]
 *
 * `--plan` prints each arrangement's micro-batches, positions and padding share without training.
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
 *   small:    hidden 512, 4 layers, 8 heads (4 kv), LoRA r 8 on q, k, v, o; rows of 1024 tokens;
 *             8 tokens per frame
 *   qwen0.5b: Qwen2.5-0.5B's shapes and vocabulary (BF16, mapped, layers recomputed), LoRA r 16
 *             on all seven modules; rows of 2048 tokens (the real-scale recipe's
 *             prompt.max_tokens); 49 tokens per frame, what a real tower gives at this scale
 *             (CLIP ViT-B/16 at 224 px, 196 patches pooled 2x2: `--encoder hf:<clip>#pool=2`)
 * Every arrangement trains the same steps of 8 samples from the same weights, after one untimed
 * warm-up step per model on its two shortest samples. Arrangements: padded batch 1 (8
 * micro-batches; no padding, the recipe's default), padded batch 2 and 4 (4 and 2 micro-batches),
 * grouped batch 4, packed batch 1 (rows of `maxTokens`, one per micro-batch), and padded batch 1 again
 * last (the machine may be shared: ratios are against the faster of the two batch-1 runs).
 * Figures: real tokens / s (text and video positions of the samples; padding not counted) and
 * target tokens / s, the padding share (1 - real / computed positions), the ratio to each padded
 * arrangement, the seconds a micro-batch costs whatever its rows (padded batch 1 against packed:
 * the same positions in more calls), and from it packing's ceiling against batch 1.
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
  /** Samples per optimizer step (the packing window). */
  window: number;
  tokensPerFrame: number;
  profileCap: number;
}

const SHAPES: Record<string, Shape> = {
  small: {
    name: 'small',
    tiny: { hiddenSize: 512, numLayers: 4, numHeads: 8, numKvHeads: 4 },
    lora: { rank: 8, alpha: 16, dropout: 0, targetModules: ['q', 'k', 'v', 'o'], seed: 1 },
    maxTokens: 1024,
    window: 8,
    tokensPerFrame: 8,
    profileCap: 128,
  },
  'qwen0.5b': {
    name: 'qwen0.5b',
    lora: { rank: 16, alpha: 32, dropout: 0, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 },
    maxTokens: 2048,
    window: 8,
    tokensPerFrame: 49,
    profileCap: 128,
  },
};

function parseArgs(argv: string[]) {
  const o = { models: ['small', 'qwen0.5b'], windows: 1, threads: undefined as number | undefined, plan: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--plan') {
      o.plan = true;
      continue;
    }
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

/** One way to arrange a step's samples: `batch` samples (padded, grouped) or rows (packed) per micro-batch. */
interface Way {
  mode: Arrangement;
  batch: number;
}

const WAYS: Way[] = [
  { mode: 'padded', batch: 1 },
  { mode: 'padded', batch: 2 },
  { mode: 'padded', batch: 4 },
  { mode: 'grouped', batch: 4 },
  { mode: 'packed', batch: 1 },
  { mode: 'padded', batch: 1 },
];

const nameOf = (w: Way) => `${w.mode} b${w.batch}`;

function arrange(window: PreparedSample[], w: Way, s: Shape): PackedBatch[] {
  if (w.mode !== 'padded') return arrangeStep(window, w.mode, { batchSize: w.batch, maxTokens: s.maxTokens, featureDim: FEATURE_DIM });
  const out: PackedBatch[] = [];
  for (let i = 0; i < window.length; i += w.batch) out.push(packBatch(window.slice(i, i + w.batch), FEATURE_DIM));
  return out;
}

interface Row {
  mode: Arrangement;
  batch: number;
  sec: number;
  microBatches: number;
  realTokens: number;
  trainedTokens: number;
  positions: number;
  padding: number;
  tokensPerSec: number;
  trainedPerSec: number;
  firstLoss: number;
}

/** The arrangements' shapes without training: micro-batches, positions, padding. */
function plan(samples: PreparedSample[], s: Shape, windows: number) {
  return WAYS.slice(0, -1).map((w) => {
    let micro = 0;
    let real = 0;
    let positions = 0;
    for (let k = 0; k < windows; k++) {
      for (const m of arrange(samples.slice(k * s.window, (k + 1) * s.window), w, s)) {
        micro += 1;
        real += m.tokens;
        positions += m.batch * m.seqLen;
      }
    }
    return { way: w, micro, real, positions, padding: 1 - real / positions };
  });
}

async function benchShape(s: Shape, dialogues: Dialogue[], windows: number, planOnly: boolean) {
  const dir = path.join(here, 'data', 'packing', s.name, 'model');
  if (!planOnly && !existsSync(path.join(dir, 'config.json'))) {
    process.stdout.write(`writing the ${s.name} model into ${path.relative(process.cwd(), dir)}\n`);
    mkdirSync(dir, { recursive: true });
    await writeTinyModel(dir, s.tiny ? { ...s.tiny, seed: 11 } : { preset: 'qwen2.5-0.5b', seed: 11 });
  }
  const videoTokenId = 2; // any id: the bench's inputs are random ids, the video positions replaced by features
  const { samples, tooLong } = samplesOf(dialogues, s, videoTokenId);
  const needed = windows * s.window;
  if (samples.length < needed) throw new Error(`packing: ${samples.length} samples fit ${s.maxTokens} tokens, ${needed} needed`);
  const lengths = samples.map((x) => x.prompt.inputIds.length).sort((a, b) => a - b);
  process.stdout.write(
    `\n${s.name}: ${samples.length} samples of the MMRole fixtures fit ${s.maxTokens} tokens (${tooLong} longer skipped); ` +
      `${s.tokensPerFrame} tokens per frame; lengths min ${lengths[0]} median ${lengths[lengths.length >> 1]} max ${lengths[lengths.length - 1]}; ` +
      `steps of ${s.window} samples, ${windows} timed\n`,
  );
  for (const p of plan(samples, s, windows)) {
    process.stdout.write(`  plan ${nameOf(p.way).padEnd(10)} ${String(p.micro).padStart(3)} micro-batches, ${p.positions} positions for ${p.real} tokens (padding ${(100 * p.padding).toFixed(1)}%)\n`);
  }
  if (planOnly) return null;
  const model = await loadModel(dir, { log: null });
  model.gradientCheckpointing = s.name === 'qwen0.5b';
  for (const x of samples) for (const p of x.prompt.videoPositions) x.prompt.inputIds[p] = model.videoTokenId!;
  // Warm-up (untimed, once): a step on the two shortest samples, each arrangement's code paths.
  {
    model.addLora(s.lora);
    model.addProjector({ featureDim: FEATURE_DIM, seed: 2 });
    const params = trainableParams(model, { video: true });
    const optimizer = new AdamW(params);
    const shortest = [...samples].sort((a, b) => a.prompt.inputIds.length - b.prompt.inputIds.length).slice(0, 2);
    for (const w of [WAYS[2]!, WAYS[5]!]) await optimizerStep(model, optimizer, params, arrange(shortest, w, s), new Rng(1), 1, () => 1e-4);
    optimizer.dispose();
  }
  const rows: Row[] = [];
  for (const w of WAYS) {
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
    for (let k = 0; k < windows; k++) {
      const batches = arrange(samples.slice(k * s.window, (k + 1) * s.window), w, s);
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
    const row: Row = { mode: w.mode, batch: w.batch, sec: +sec.toFixed(2), microBatches: micro, realTokens: real, trainedTokens: trained, positions, padding: +(1 - real / positions).toFixed(3), tokensPerSec: +(real / sec).toFixed(1), trainedPerSec: +(trained / sec).toFixed(1), firstLoss: losses[0]! };
    rows.push(row);
    process.stdout.write(
      `  ${nameOf(w).padEnd(10)} ${String(micro).padStart(3)} micro-batches, ${positions} positions for ${real} tokens (padding ${(100 * row.padding).toFixed(1)}%): ` +
        `${sec.toFixed(1)} s, ${row.tokensPerSec} tokens/s, ${row.trainedPerSec} trained tokens/s; first loss ${losses[0]!.toFixed(6)}\n`,
    );
  }
  model.dispose();
  return { rows, samples: samples.length, tooLong };
}

/**
 * Ratios, and what one micro-batch costs whatever its rows. Padded batch 1 and packed batch 1
 * compute the same positions with the same attention (each sample alone, or its block of a
 * packed row), in 8 and in fewer calls: the difference in time over the difference in calls is the
 * per-call cost (the frozen BF16 panels converted for each GEMM, the head's chunks, per-op
 * overhead). Against batch 1, packing can at most save every call but one (rows of any length):
 * that is its ceiling there, whatever `maxTokens` allows. Against larger padded
 * batches it also saves the padding's positions and their attention (a padded row attends over its
 * whole length): no simple ceiling, the measured ratio is the figure.
 */
export function summarise(rows: Row[]) {
  const [b1, b2, b4, grouped, packed, b1again] = rows as [Row, Row, Row, Row, Row, Row];
  const padded1 = b1again.sec < b1.sec ? b1again : b1;
  const spread = Math.max(b1.sec, b1again.sec) / Math.min(b1.sec, b1again.sec);
  // Below the two batch-1 runs' own spread the difference is noise, not a cost.
  const resolved = padded1.sec - packed.sec > (spread - 1) * padded1.sec && packed.microBatches < padded1.microBatches;
  const perCall = resolved ? (padded1.sec - packed.sec) / (padded1.microBatches - packed.microBatches) : null;
  const ratio = (r: Row) => +(packed.tokensPerSec / r.tokensPerSec).toFixed(2);
  return {
    packedVsPadded1: ratio(padded1),
    packedVsPadded2: ratio(b2),
    packedVsPadded4: ratio(b4),
    packedVsGrouped4: ratio(grouped),
    groupedVsPadded4: +(grouped.tokensPerSec / b4.tokensPerSec).toFixed(2),
    padded4VsPadded1: +(b4.tokensPerSec / padded1.tokensPerSec).toFixed(2),
    padded1Spread: +spread.toFixed(3),
    perCallSec: perCall === null ? null : +perCall.toFixed(3),
    perCallPositions: perCall === null ? null : +(perCall / (padded1.sec / padded1.positions)).toFixed(1),
    ceilingVsPadded1: perCall === null ? null : +(padded1.sec / (padded1.sec - perCall * (padded1.microBatches - 1))).toFixed(2),
  };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dialogues = await readDialogues();
  if (o.plan) {
    for (const m of o.models) await benchShape(SHAPES[m]!, dialogues, o.windows, true);
    return;
  }
  const backend = await initBackend({ backend: 'wasm', threads: o.threads, log: null });
  const load = os.loadavg()[0]!;
  process.stdout.write(`packing bench: ${dialogues.length} MMRole dialogues; wasm + native, ${backend.threads} threads; ${os.availableParallelism()} CPUs, 1-min load average ${load.toFixed(1)} at the start\n`);
  for (const m of o.models) {
    const s = SHAPES[m]!;
    const r = (await benchShape(s, dialogues, o.windows, false))!;
    const sum = summarise(r.rows);
    process.stdout.write(
      `  ${m}: packed ${sum.packedVsPadded1}x padded batch 1 (the faster run), ${sum.packedVsPadded2}x padded batch 2, ${sum.packedVsPadded4}x padded batch 4, ${sum.packedVsGrouped4}x grouped batch 4; ` +
        `grouped ${sum.groupedVsPadded4}x padded batch 4; padded batch 4 ${sum.padded4VsPadded1}x batch 1\n` +
        (sum.perCallSec === null
          ? `  ${m}: padded batch 1 and packed differ by less than the two batch-1 runs (${sum.padded1Spread}x apart): the cost of a micro-batch whatever its rows is below this run's noise\n`
          : `  ${m}: a micro-batch costs ${sum.perCallSec} s whatever its rows (${sum.perCallPositions} positions' worth; padded batch 1 vs packed); ` +
            `packing's ceiling against batch 1 (one call per step): ${sum.ceilingVsPadded1}x; the two batch-1 runs differ by ${sum.padded1Spread}x\n`),
    );
    appendFileSync(
      path.join(here, 'results.jsonl'),
      `${JSON.stringify({ bench: 'packing', case: `packing-${m}`, model: m, maxTokens: s.maxTokens, window: s.window, tokensPerFrame: s.tokensPerFrame, windows: o.windows, samples: r.samples, tooLong: r.tooLong, arrangements: r.rows, ...sum, threads: backend.threads, cpus: os.availableParallelism(), loadavg1Start: +load.toFixed(1), loadavg1End: +os.loadavg()[0]!.toFixed(1), node: process.version, time: new Date().toISOString() })}\n`,
    );
  }
  process.stdout.write(`1-min load average at the end: ${os.loadavg()[0]!.toFixed(1)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
