/**
 * `rpv demo`: the whole job on the bundled sample, in minutes on 2 CPU cores.
 *
 * 1. sample export (ffmpeg clips of a coloured shape moving one way, bilingual role-play dialogues
 *    whose answers depend on the video);
 * 2. conversion to Arrow shards (adaptive frame sampling, grid-v1 features), and their summary;
 * 3. a small loader benchmark beside the raw-read ceiling;
 * 4. a tiny random-initialised model;
 * 5. recipes/demo.yaml (with video) and recipes/demo-text-only.yaml (the paper's ablation);
 * 6. both held-out losses, overall and on the role's video-dependent words (colours and
 *    directions), how often each model's replies to the held-out questions name the clip's
 *    colour/direction (showcase.ts), and a plot of both runs.
 */
import { promises as fs, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RpvError } from '../util/errors.js';
import { formatDuration } from '../util/progress.js';
import { writeFileAtomic } from '../util/atomic.js';
import { loadRecipe } from '../train/recipe.js';
import { train, type TrainResult } from '../train/trainer.js';
import { readMetrics, type TrainMetric } from '../train/metrics.js';
import { renderSvg, smooth } from '../train/plot.js';
import type { VisualAnswerScore } from './showcase.js';

export interface DemoOptions {
  /** Folder of the export, shards and tiny model. */
  dir: string;
  /** Optimizer steps per run (default: the recipes'). */
  steps?: number;
  /** Redo export, shards and model. */
  fresh?: boolean;
  progress?: boolean;
  /** Output lines (default stdout). */
  print?: (line: string) => void;
}

export interface DemoRun {
  name: string;
  result: TrainResult;
  heldOutLoss: number;
  focusLoss: number | null;
  focusTokens: number;
  seconds: number;
  /** Loader wait as a fraction of step time over the run. */
  loaderWaitFraction: number;
}

export interface DemoResult {
  runs: DemoRun[];
  /** With-video focus-word loss below the text-only one. */
  videoHelps: boolean;
  /** How often each run's replies to held-out questions name the clip's colour/direction (`showcase.ts`). */
  visualAnswers: VisualAnswerScore | null;
  seconds: number;
}

/** Tiny model of the demo: weights drawn with a larger std than a real init so that LoRA on a random base can still move the logits. */
export const DEMO_MODEL = { hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 512, initStd: 0.2, seed: 0 } as const;

/** Where the shipped recipes are (beside src/ and dist/). */
export function recipesDir(): string {
  return fileURLToPath(new URL('../../recipes/', import.meta.url));
}

/** Clips of the demo's sample export: 72 to train on, 24 held out (every colour x direction pair several times). */
export const DEMO_CLIPS = 96;

/**
 * Frame features of the demo: grid-v1 on a 2x2 grid (34 numbers per frame). Measured: with the
 * default 4x4 grid (118 numbers) and 72 training clips the tiny model memorises clips instead of
 * reading the colour, and its held-out colour-word loss is no better than text-only.
 */
export const DEMO_ENCODER = 'grid:cells=2';

/** Frames are scaled to this before the grid encoder (its statistics need no more). */
export const DEMO_FRAME_SIZE = 64;

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const print = options.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const progress = options.progress ?? true;
  const started = performance.now();
  const dir = options.dir;
  const exportDir = path.join(dir, 'export');
  const shardsDir = path.join(dir, 'shards');
  const modelDir = path.join(dir, 'tiny-model');
  const stage = (n: number, text: string) => print(`\n[${n}/6] ${text}`);
  // What the folder was built with: anything else (an older rpv, other settings) is rebuilt.
  const config = JSON.stringify({ clips: DEMO_CLIPS, encoder: DEMO_ENCODER, frameSize: DEMO_FRAME_SIZE, model: DEMO_MODEL });
  const configFile = path.join(dir, 'demo-config.json');
  const built = await fs.readFile(configFile, 'utf8').catch(() => null);
  if (options.fresh || (built !== null && built.trim() !== config) || (built === null && existsSync(dir))) {
    await fs.rm(dir, { recursive: true, force: true });
  }
  await fs.mkdir(dir, { recursive: true });
  await writeFileAtomic(configFile, `${config}\n`);

  stage(1, `sample export -> ${exportDir}`);
  if (existsSync(path.join(exportDir, 'facts.json')) && existsSync(path.join(exportDir, 'annotations.jsonl'))) {
    print('  present, reused (--fresh to redo)');
  } else {
    const { writeSampleExport } = await import('./sample-export.js');
    const s = await writeSampleExport(exportDir, { clips: DEMO_CLIPS, progress });
    print(`  ${s.clips.length} clips (${s.totalDurationSec.toFixed(0)} s of ${s.videoCodec}), ${s.roles.length} roles, ${s.dialogues} dialogues in ${s.elapsedSec.toFixed(1)} s`);
  }

  stage(2, `convert -> ${shardsDir}`);
  if (existsSync(path.join(shardsDir, 'index.json'))) {
    print('  present, reused (--fresh to redo)');
  } else {
    const { convertExport } = await import('../convert/convert.js');
    const c = await convertExport({ input: exportDir, out: shardsDir, shardFormat: 'arrow', frameSize: DEMO_FRAME_SIZE, encoder: DEMO_ENCODER, progress });
    print(`  ${c.rows} videos, ${c.dialogues} dialogues -> ${c.shards} shard(s) in ${c.elapsedSec.toFixed(1)} s (${c.counts.skipped} skipped)`);
  }
  const { inspectDataset, renderRow } = await import('../shard/inspect.js');
  const report = await inspectDataset(shardsDir, { verify: true });
  const index = report.index;
  const t = index.totals;
  const bad = (report.checks ?? []).filter((c) => !c.ok);
  if (bad.length > 0) throw new RpvError(`demo: ${shardsDir}: ${bad.map((c) => `${c.file}: ${c.problem}`).join('; ')}`);
  print(
    `  inspect: ${t.rows} videos, ${t.dialogues} dialogues, ${t.frames} frames in ${t.shards} shard(s) (verified), ${(t.bytes / 1024).toFixed(0)} KiB; ` +
      `features ${index.schema.featureDim}-dim x ${index.schema.tokensPerFrame} token(s)/frame (${index.encoder.id}), ${index.schema.dtype}; ` +
      `read ${index.counts.read} = converted ${index.counts.converted} + skipped ${index.counts.skipped}`,
  );
  if (report.sampleRow) for (const line of renderRow(report.sampleRow, index, 70).slice(0, 6)) print(`    ${line}`);

  stage(3, 'loader benchmark (small: 1 worker, batch 8, Arrow)');
  const { benchLoader } = await import('../loader/bench.js');
  await benchLoader({ dir: shardsDir, workers: 1, batchSize: 8, formats: ['arrow'], log: (l) => print(`  ${l}`) });

  stage(4, `tiny model -> ${modelDir}`);
  if (existsSync(path.join(modelDir, 'config.json'))) print('  present, reused (--fresh to redo)');
  else {
    const { writeTinyModel } = await import('../model/tiny.js');
    // Built beside, then renamed: an interrupted demo never leaves a model with the stock tokenizer.
    const tmp = `${modelDir}.tmp`;
    await fs.rm(tmp, { recursive: true, force: true });
    await writeTinyModel(tmp, DEMO_MODEL);
    const recipe = await loadRecipe(path.join(recipesDir(), 'demo.yaml'), [`model.path=${modelDir}`, `data.shards=${shardsDir}`]);
    const merges = await fitTokenizer(tmp, path.join(exportDir, 'annotations.jsonl'), recipe);
    await fs.rename(tmp, modelDir);
    print(
      `  qwen2 layout, hidden ${DEMO_MODEL.hiddenSize}, ${DEMO_MODEL.numLayers} layers, random weights (std ${DEMO_MODEL.initStd}); ` +
        `byte-level BPE of ${DEMO_MODEL.vocabSize} tokens (${merges} merges learnt from the training videos' dialogues)`,
    );
  }

  const runs: DemoRun[] = [];
  const names = ['demo', 'demo-text-only'];
  for (const [i, name] of names.entries()) {
    stage(5, `train ${name} (${i + 1}/2)`);
    // Each demo trains its runs afresh, replacing those of an earlier demo.
    const overrides = [`model.path=${modelDir}`, `data.shards=${shardsDir}`, `output_dir=${path.join('runs', name)}`, 'overwrite_output_dir=true'];
    if (options.steps !== undefined) overrides.push(`train.max_steps=${options.steps}`);
    const recipe = await loadRecipe(path.join(recipesDir(), `${name}.yaml`), overrides);
    const t0 = performance.now();
    const result = await train(recipe, { progressStream: progress ? process.stderr : null, log: () => {} });
    const seconds = (performance.now() - t0) / 1000;
    const ev = result.lastEval;
    if (!ev) throw new RpvError(`demo: ${name} finished without a held-out evaluation`);
    const metrics = (await readMetrics(path.join(recipe.output_dir, 'metrics.jsonl'))).filter((m): m is TrainMetric => m.type === 'train');
    const wait = metrics.reduce((a, m) => a + m.loader_wait_sec, 0);
    const steps = metrics.reduce((a, m) => a + m.step_sec, 0);
    runs.push({ name, result, heldOutLoss: ev.loss, focusLoss: ev.focus_loss, focusTokens: ev.focus_tokens, seconds, loaderWaitFraction: steps > 0 ? wait / steps : 0 });
    print(
      `  ${result.steps} steps in ${formatDuration(seconds)} (${result.backend.backend}); held-out loss ${ev.loss.toFixed(3)}, ` +
        `video-dependent words ${ev.focus_loss?.toFixed(3) ?? 'n/a'} over ${ev.focus_tokens} tokens; loader wait ${(100 * (steps > 0 ? wait / steps : 0)).toFixed(1)}% of step time`,
    );
  }

  stage(6, 'results');
  const [video, text] = runs as [DemoRun, DemoRun];
  const row = (r: DemoRun) =>
    `  ${r.name.padEnd(16)} ${r.heldOutLoss.toFixed(3).padStart(8)} ${Math.exp(r.heldOutLoss).toFixed(1).padStart(8)} ${(r.focusLoss?.toFixed(3) ?? 'n/a').padStart(14)}`;
  print(`  ${'run'.padEnd(16)} ${'held-out'.padStart(8)} ${'ppl'.padStart(8)} ${'video words'.padStart(14)}`);
  print(row(video));
  print(row(text));
  const videoHelps = video.focusLoss !== null && text.focusLoss !== null && video.focusLoss < text.focusLoss;
  if (video.focusLoss !== null && text.focusLoss !== null) {
    print(
      `  on the role's colour/direction words (${video.focusTokens} held-out tokens) the model that watches the video has loss ` +
        `${video.focusLoss.toFixed(3)} vs ${text.focusLoss.toFixed(3)} without it: ${videoHelps ? `${(text.focusLoss - video.focusLoss).toFixed(3)} nats lower per token` : 'NOT lower'}`,
    );
  }
  let visualAnswers: VisualAnswerScore | null = null;
  try {
    const { scoreVisualAnswers, formatVisualAnswers } = await import('./showcase.js');
    visualAnswers = await scoreVisualAnswers(shardsDir, runs.map((r) => path.join('runs', r.name)));
    print('');
    for (const line of formatVisualAnswers(visualAnswers)) print(line);
  } catch (err) {
    print(`  (held-out replies skipped: ${(err as Error).message})`);
  }
  const svg = path.join('runs', 'demo-compare.svg');
  await writeFileAtomic(svg, await compareSvg(runs.map((r) => path.join('runs', r.name))));
  const seconds = (performance.now() - started) / 1000;
  print(`  curves: ${svg}; runs: runs/demo, runs/demo-text-only; total ${formatDuration(seconds)}`);
  return { runs, videoHelps, seconds, visualAnswers };
}

/**
 * Replace the tiny model's tokenizer by a byte-level BPE learnt from the export's training-split
 * text (role prompts, profiles, dialogues), with the same vocabulary size and special-token ids.
 * A real base model's tokenizer knows its language's common words; with the stock tiny
 * tokenizer the demo's words (and all Chinese) fall apart into bytes, making sequences ~3x longer
 * and each video-dependent word several hard tokens. Held-out videos' text is not used.
 */
export async function fitTokenizer(modelDir: string, annotationsFile: string, recipe: import('../train/recipe.js').Recipe): Promise<number> {
  const { trainByteLevelBpe, bpeTokenizerJson } = await import('../model/bpe.js');
  const { TINY_SPECIAL_TOKENS } = await import('../model/tiny.js');
  const { isHeldOut } = await import('../train/dataset.js');
  const { systemText } = await import('../train/prompt.js');
  const records = (await fs.readFile(annotationsFile, 'utf8'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { id: string; role: string; profile?: string; dialogues: { turns: { speaker: string; text: string }[] }[] });
  let text = '';
  for (const r of records) {
    if (isHeldOut(r.id, recipe.data.heldout_fraction, recipe.seed)) continue;
    text += `${systemText(r.role, r.profile ?? null, false)}\n`;
    for (const d of r.dialogues) for (const t of d.turns) text += `${t.text}\n`;
  }
  const file = path.join(modelDir, 'tokenizer.json');
  const before = JSON.parse(await fs.readFile(file, 'utf8')) as { added_tokens: { id: number; content: string }[] };
  const bpe = trainByteLevelBpe(text, DEMO_MODEL.vocabSize - 256 - TINY_SPECIAL_TOKENS.length);
  const special = TINY_SPECIAL_TOKENS.map((content, i) => ({ content, id: bpe.vocab.size + i }));
  for (const s of special) {
    const old = before.added_tokens.find((t) => t.content === s.content);
    if (!old || old.id !== s.id) throw new RpvError(`demo: the refitted tokenizer would move ${s.content} from id ${old?.id} to ${s.id}`);
  }
  await writeFileAtomic(file, `${JSON.stringify(bpeTokenizerJson(bpe, special))}\n`);
  return bpe.merges.length;
}

/** Held-out loss curves of several runs on one plot. */
async function compareSvg(runDirs: string[]): Promise<string> {
  const colors = ['#d94801', '#08519c'];
  const series = [];
  for (const [i, dir] of runDirs.entries()) {
    const m = await readMetrics(path.join(dir, 'metrics.jsonl'));
    const train = m.filter((x) => x.type === 'train');
    const evals = m.filter((x) => x.type === 'eval');
    const sm = smooth(train.map((x) => x.loss));
    const name = path.basename(dir);
    series.push({ name: `${name} train`, color: colors[i % 2]!, dashed: true, points: train.map((x, j) => [x.step, sm[j]!] as [number, number]) });
    series.push({ name: `${name} held-out`, color: colors[i % 2]!, markers: true, points: evals.map((x) => [x.step, x.loss] as [number, number]) });
    series.push({ name: `${name} video words`, color: i === 0 ? '#238b45' : '#6a51a3', markers: true, points: evals.filter((x) => x.focus_loss !== null).map((x) => [x.step, x.focus_loss!] as [number, number]) });
  }
  return renderSvg(series, { title: 'demo: with video vs text-only (held-out)' });
}
