/**
 * The training loop: a recipe in, a trained adapter (LoRA + video projector) out.
 *
 * One optimizer step = `grad_accum_steps` micro-batches. A micro-batch is one loader batch minus
 * its held-out samples and the samples that cannot be trained (too long for `prompt.max_tokens`,
 * or without a turn of the role), each skip counted by reason. The loss of a step is the sum of
 * -log p over every trained token of its micro-batches divided by their total count, so each
 * token weighs the same however the tokens fall into micro-batches (gradient accumulation
 * normalised by trained tokens). Gradients are clipped by global norm, then AdamW updates with
 * warm-up + cosine learning rates per parameter group (LoRA, projector). Stage 1
 * (`projector_warmup_steps`) trains the projector alone; stage 2 trains LoRA and projector.
 *
 * Determinism: the loader's order is a function of the seed; dropout seeds come from one saved
 * RNG stream; checkpoints hold the exact float32 parameters, optimizer moments, loader position
 * and RNG state. A resumed run therefore computes the same losses as an uninterrupted one on the
 * same backend.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createLoader, type Loader } from '../loader/index.js';
import type { Sample } from '../loader/collate.js';
import type { LoaderState } from '../loader/state.js';
import { initBackend, type BackendInfo } from '../model/backend.js';
import type { CausalLM } from '../model/decoder.js';
import { Progress } from '../util/progress.js';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { AdamW, clipGradNorm, type Param } from './adamw.js';
import { forwardInput, lossSum, promptTokenizer, targetLosses, trainableParams } from './bridge.js';
import { readCheckpoint, resolveCheckpoint, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { scanDataset, staticProfile, isHeldOut, type DatasetSummary } from './dataset.js';
import { MetricsWriter, type EvalMetric, type TrainMetric } from './metrics.js';
import { packBatch, type PackedBatch, type PreparedSample } from './pack.js';
import { renderTrainingPrompt, type PromptTokenizer, type RenderedPrompt, type SkipReason } from './prompt.js';
import { formatRecipe, type Recipe } from './recipe.js';
import { Rng } from './rng.js';
import { lrAt, warmupStepsFor } from './schedule.js';
import { loadTrainModel, exportAdapter } from './model-io.js';
import { gib, planMemory, type MemoryPlan } from './memory.js';
import { weightHeapBytes } from '../model/load.js';

/** Rendered prompts kept across epochs (about 1-2 KB each). */
const PROMPT_CACHE_ENTRIES = 100_000;

/** What the loader's collate hands the trainer: samples rendered, frames copied. */
interface MicroBatch {
  epoch: number;
  index: number;
  samples: PreparedSample[];
  /** Held-out samples, not trained. */
  heldOut: number;
  skipped: Partial<Record<SkipReason, number>>;
  /** Samples repeated only to even out ranks. */
  padding: number;
}

export interface TrainOptions {
  /** Draws the progress bar; null for none. Default process.stderr. */
  progressStream?: NodeJS.WriteStream | null;
  /** Lines of information (start, evals, checkpoints). Default: stderr. */
  log?: (line: string) => void;
  /** Polled after each step: true saves a checkpoint and stops (Ctrl-C). */
  shouldStop?: () => boolean;
  /** Called after every optimizer step with its metrics (tests). */
  onStep?: (m: TrainMetric) => void;
}

export interface TrainResult {
  steps: number;
  totalSteps: number;
  stopped: boolean;
  lastEval: EvalMetric | null;
  checkpoint: string | null;
  losses: number[];
  skipped: Record<string, number>;
  backend: BackendInfo;
}

/** Everything set up for a run; shared by `train` and `--dry-run`. */
export interface TrainingSession {
  recipe: Recipe;
  backend: BackendInfo;
  model: CausalLM;
  tokenizer: PromptTokenizer;
  dataset: DatasetSummary;
  featureDim: number;
  tokensPerFrame: number;
  /** Optimizer steps of the whole run. */
  totalSteps: number;
  warmupSteps: number;
  /** Loader batches per epoch (each a micro-batch once held-out samples are removed). */
  batchesPerEpoch: number;
  params: Param[];
  /** Where memory goes at the longest sample, and whether layers are recomputed (src/train/memory.ts). */
  memory: MemoryPlan;
  prepare: (s: Sample) => { sample?: PreparedSample; skip?: SkipReason | 'held-out'; prompt?: RenderedPrompt };
  dispose: () => void;
}

export async function openSession(recipe: Recipe, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<TrainingSession> {
  const backend = await initBackend({ backend: recipe.model.backend, threads: recipe.model.threads ?? undefined, log });
  const dataset = await scanDataset(recipe.data.shards, { heldoutFraction: recipe.data.heldout_fraction, seed: recipe.seed });
  const schema = dataset.index.schema;
  if (dataset.dialogues.train === 0) {
    throw new RpvError(`train: ${recipe.data.shards}: no training dialogues (all ${dataset.dialogues.heldout} are held out; lower data.heldout_fraction)`);
  }
  const model = await loadTrainModel(recipe, schema.featureDim);
  const tokenizer = promptTokenizer(model.tokenizer!);
  const probe = createLoader({ source: recipe.data.shards, batchSize: recipe.data.batch_size, seed: recipe.seed, shuffle: recipe.data.shuffle, workers: 0 });
  const info = await probe.describe();
  const batchesPerEpoch = info.batchesPerEpoch;
  const stepsPerEpoch = Math.max(1, Math.floor(batchesPerEpoch / recipe.train.grad_accum_steps));
  const totalSteps = recipe.train.max_steps ?? Math.max(1, Math.ceil(recipe.train.epochs * stepsPerEpoch));
  const warmupSteps = warmupStepsFor(totalSteps, recipe.scheduler.warmup_ratio, recipe.scheduler.warmup_steps);
  const params = trainableParams(model, { video: recipe.data.use_video });
  const memory = planMemory({
    config: model.config,
    trainableValues: params.reduce((n, p) => n + p.variable.size, 0),
    weightHeapBytes: weightHeapBytes(model.weights, model.config),
    mappedBytes: (model.weights.mappedFiles ?? []).reduce((n, f) => n + f.bytes, 0),
    maxTokens: recipe.prompt.max_tokens,
    batchSize: recipe.data.batch_size,
    gradientCheckpointing: recipe.train.gradient_checkpointing,
    prefetchBytes: recipe.data.prefetch_bytes,
    backend: backend.backend,
  });
  if (memory.refusal) {
    model.dispose();
    throw new RpvError(memory.refusal);
  }
  model.gradientCheckpointing = memory.checkpointing;
  // Rendering is a pure function of the sample, so later epochs reuse it (bounded: small datasets
  // and the first PROMPT_CACHE_ENTRIES samples of large ones).
  const cache = new Map<string, ReturnType<typeof renderSample>>();
  const prepare = (s: Sample) => {
    if (isHeldOut(s.video_id, recipe.data.heldout_fraction, recipe.seed)) return { skip: 'held-out' as const };
    let rendered = cache.get(s.sampleId);
    if (!rendered) {
      rendered = renderSample(recipe, tokenizer, dataset, s, schema.tokensPerFrame);
      if (cache.size < PROMPT_CACHE_ENTRIES) cache.set(s.sampleId, rendered);
    }
    if ('skip' in rendered) return { skip: rendered.skip };
    return { sample: prepared(s, rendered, recipe.data.use_video, schema.tokensPerFrame * schema.featureDim), prompt: rendered };
  };
  return {
    recipe,
    backend,
    model,
    tokenizer,
    dataset,
    featureDim: schema.featureDim,
    tokensPerFrame: schema.tokensPerFrame,
    totalSteps,
    warmupSteps,
    batchesPerEpoch,
    params,
    memory,
    prepare,
    dispose: () => model.dispose(),
  };
}

function renderSample(recipe: Recipe, tok: PromptTokenizer, dataset: DatasetSummary, s: Sample, tokensPerFrame: number, profileMode?: Recipe['prompt']['static_profile']) {
  const profile = staticProfile(tok, s, dataset.roleDialogues, {
    mode: profileMode ?? recipe.prompt.static_profile,
    dialogues: recipe.prompt.profile_dialogues,
    maxTokens: recipe.prompt.profile_max_tokens,
    seed: recipe.seed,
  });
  return renderTrainingPrompt(
    tok,
    { role: s.role, profile, frameTimes: recipe.data.use_video ? s.frameTimes.subarray(0, s.numFrames) : [], dialogue: { dialogue_id: s.dialogue_id, turns: s.turns } },
    {
      maxTokens: recipe.prompt.max_tokens,
      lossOn: recipe.prompt.loss_on,
      frameTimeText: recipe.prompt.frame_time_text,
      tokensPerFrame,
      focusWords: recipe.eval.focus_words,
    },
  );
}

function prepared(s: Sample, prompt: RenderedPrompt, video: boolean, frameValues: number): PreparedSample {
  return { sampleId: s.sampleId, prompt, frames: video ? s.frames.slice(0, s.numFrames * frameValues) : new Float32Array(0) };
}

/** Run (or continue, with `recipe.resume`) a training run. */
export async function train(recipe: Recipe, options: TrainOptions = {}): Promise<TrainResult> {
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const session = await openSession(recipe, log);
  try {
    return await runLoop(session, options, log);
  } finally {
    session.dispose();
  }
}

async function runLoop(session: TrainingSession, options: TrainOptions, log: (line: string) => void): Promise<TrainResult> {
  const { recipe, model, params, totalSteps, warmupSteps } = session;
  const runDir = recipe.output_dir;
  const recipeYaml = formatRecipe({ ...recipe, resume: null });
  const m = session.memory;
  log(`train: memory at the longest sample: about ${gib(m.tensorBytes)} of tensors (${m.tensorLimit.source} holds ${gib(m.tensorLimit.bytes)}), ${gib(m.hostBytes)} in all; gradient checkpointing ${m.checkpointing ? 'on' : 'off'}`);
  const optimizer = new AdamW(params, {
    beta1: recipe.optimizer.beta1,
    beta2: recipe.optimizer.beta2,
    eps: recipe.optimizer.eps,
    weightDecay: recipe.optimizer.weight_decay,
  });
  let rng = new Rng(recipe.seed);
  let step = 0;
  let tokensSeen = 0;
  let loaderState: LoaderState | null = null;
  const skipped: Record<string, number> = {};
  let metrics: MetricsWriter;
  if (recipe.resume) {
    const dir = await resolveCheckpoint(recipe.resume);
    const ckpt = await readCheckpoint(dir);
    for (const p of params) {
      const saved = ckpt.trainable.get(p.name);
      if (!saved) throw new RpvError(`train: checkpoint ${dir}: no values for ${p.name} (was it trained with another recipe?)`);
      if (saved.data.length !== p.variable.size) {
        throw new RpvError(`train: checkpoint ${dir}: ${p.name} has ${saved.data.length} values, this run's parameter has ${p.variable.size}`);
      }
      tf.tidy(() => p.variable.assign(tf.tensor(saved.data, p.variable.shape, 'float32')));
    }
    optimizer.loadState(ckpt.optimizer);
    rng = new Rng(ckpt.state.rng);
    step = ckpt.state.step;
    tokensSeen = ckpt.state.tokens;
    loaderState = ckpt.state.loader as LoaderState | null;
    Object.assign(skipped, ckpt.state.skipped);
    log(`train: resumed from ${dir} at step ${step}`);
    metrics = await MetricsWriter.open(runDir, step);
  } else {
    metrics = await MetricsWriter.open(runDir);
  }
  await writeFileAtomic(path.join(runDir, 'recipe.yaml'), recipeYaml);

  const loader: Loader<MicroBatch> = createLoader<MicroBatch>({
    source: recipe.data.shards,
    batchSize: recipe.data.batch_size,
    seed: recipe.seed,
    shuffle: recipe.data.shuffle,
    workers: recipe.data.workers,
    prefetchBytes: recipe.data.prefetch_bytes,
    dropLast: false,
    resume: loaderState ?? undefined,
    collate: (samples, ctx) => {
      const mb: MicroBatch = { epoch: ctx.epoch, index: ctx.batchIndex, samples: [], heldOut: 0, skipped: {}, padding: 0 };
      for (const s of samples) {
        if (s.padding) {
          mb.padding += 1;
          continue;
        }
        const r = session.prepare(s);
        if (r.sample) mb.samples.push(r.sample);
        else if (r.skip === 'held-out') mb.heldOut += 1;
        else if (r.skip) mb.skipped[r.skip] = (mb.skipped[r.skip] ?? 0) + 1;
      }
      return mb;
    },
  });
  let iterator: AsyncIterator<MicroBatch> = loader[Symbol.asyncIterator]();
  let emptyEpochs = 0;
  const nextMicroBatch = async (): Promise<MicroBatch> => {
    for (;;) {
      const r = await iterator.next();
      if (!r.done) {
        emptyEpochs = 0;
        return r.value;
      }
      // End of an epoch: iterate again for the next one.
      if (++emptyEpochs > 1) throw new RpvError('train: the loader yielded no batch for a whole epoch');
      iterator = loader[Symbol.asyncIterator]();
    }
  };

  const evaluator = new Evaluator(session);
  const progress = new Progress({ label: 'train', total: totalSteps, unit: 'steps', stream: options.progressStream === undefined ? process.stderr : options.progressStream });
  progress.done = step;
  const losses: number[] = [];
  let lastEval: EvalMetric | null = null;
  let checkpoint: string | null = null;
  let stopped = false;
  const lrFor = (s: number) => (group: string) =>
    lrAt(s, {
      peakLr: group === 'projector' ? (recipe.optimizer.projector_lr ?? recipe.optimizer.lr) : recipe.optimizer.lr,
      totalSteps,
      warmupSteps,
      type: recipe.scheduler.type,
      minLrRatio: recipe.scheduler.min_lr_ratio,
    });
  const saveCheckpoint = async () => {
    const trainable = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of params) trainable.set(p.name, { shape: [...p.variable.shape], data: new Float32Array(await p.variable.data()) });
    const state: TrainerState = {
      step,
      epoch: loader.state().epoch,
      loader: loader.state(),
      rng: rng.state(),
      skipped: { ...skipped },
      tokens: tokensSeen,
      totalSteps,
      lastEval,
    };
    checkpoint = await writeCheckpoint(runDir, {
      trainable,
      optimizer: await optimizer.state(),
      state,
      recipeYaml,
      keepLast: recipe.checkpoint.keep_last,
      exportAdapter: async (dir) => {
        await exportAdapter(model, recipe, dir);
      },
    });
    return checkpoint;
  };

  try {
    while (step < totalSteps) {
      const stage: 'projector' | 'lora' = step < recipe.train.projector_warmup_steps ? 'projector' : 'lora';
      const active = stage === 'projector' ? params.filter((p) => p.group === 'projector') : params;
      const stepStart = performance.now();
      let waitMs = 0;
      const micro: PackedBatch[] = [];
      while (micro.length < recipe.train.grad_accum_steps) {
        const t0 = performance.now();
        const mb = await nextMicroBatch();
        waitMs += performance.now() - t0;
        for (const [reason, n] of Object.entries(mb.skipped)) skipped[reason] = (skipped[reason] ?? 0) + n;
        if (mb.samples.length === 0) continue;
        micro.push(packBatch(mb.samples, session.featureDim));
      }
      const total = micro.reduce((a, b) => a + b.trainedTokens, 0);
      const grads = new Map<string, tf.Tensor>();
      let lossTotal = 0;
      for (const batch of micro) {
        const seed = rng.nextSeed();
        const { value, grads: g } = tf.variableGrads(
          () => tf.div(lossSum(model, batch, { training: true, seed }), total) as tf.Scalar,
          active.map((p) => p.variable),
        );
        lossTotal += (await value.data())[0]!;
        value.dispose();
        for (const p of active) {
          const gi = g[p.variable.name];
          if (!gi) continue;
          const prev = grads.get(p.name);
          if (prev) {
            grads.set(p.name, tf.add(prev, gi));
            prev.dispose();
            gi.dispose();
          } else grads.set(p.name, gi);
        }
      }
      const gradNorm = await clipGradNorm(grads, recipe.optimizer.max_grad_norm);
      const lrs = lrFor(step);
      optimizer.step(grads, lrs);
      for (const g of grads.values()) g.dispose();
      step += 1;
      tokensSeen += total;
      const stepSec = (performance.now() - stepStart) / 1000;
      const tokens = micro.reduce((a, b) => a + b.tokens, 0);
      const metric: TrainMetric = {
        type: 'train',
        step,
        stage,
        loss: lossTotal,
        lr: lrs('lora'),
        grad_norm: gradNorm,
        tokens: total,
        tokens_per_sec: tokens / stepSec,
        step_sec: stepSec,
        loader_wait_sec: waitMs / 1000,
        skipped: Object.values(skipped).reduce((a, b) => a + b, 0),
        time: new Date().toISOString(),
      };
      losses.push(lossTotal);
      if (step % recipe.train.log_every_steps === 0 || step === totalSteps) await metrics.write(metric);
      options.onStep?.(metric);
      progress.tick(1, { loss: lossTotal, lr: metric.lr, 'tok/s': Math.round(metric.tokens_per_sec), wait: `${(waitMs / 1000).toFixed(2)}s` });

      const last = step === totalSteps;
      if ((recipe.eval.every_steps > 0 && step % recipe.eval.every_steps === 0) || last) {
        lastEval = await evaluator.run(step);
        await metrics.write(lastEval);
        log(`\neval step ${step}: loss ${lastEval.loss.toFixed(4)} ppl ${lastEval.perplexity.toFixed(2)}${lastEval.focus_loss !== null ? ` focus-word loss ${lastEval.focus_loss.toFixed(4)} (${lastEval.focus_tokens} tokens)` : ''}`);
      }
      stopped = !last && (options.shouldStop?.() ?? false);
      if ((recipe.checkpoint.every_steps > 0 && step % recipe.checkpoint.every_steps === 0) || last || stopped) {
        const dir = await saveCheckpoint();
        log(`${stopped ? '\ninterrupted: ' : '\n'}checkpoint ${dir}`);
      }
      if (stopped) break;
    }
    progress.finish();
    if (step >= totalSteps) await exportAdapter(model, recipe, path.join(runDir, 'adapter'));
  } finally {
    await iterator.return?.();
    optimizer.dispose();
    evaluator.dispose();
  }
  return { steps: step, totalSteps, stopped, lastEval, checkpoint, losses, skipped, backend: session.backend };
}

/** Held-out evaluation: samples collected once (shuffle off), then loss, perplexity, focus-word loss. */
class Evaluator {
  private batches: PackedBatch[] | null = null;

  constructor(private readonly session: TrainingSession) {}

  private async collect(): Promise<PackedBatch[]> {
    const { recipe } = this.session;
    const size = recipe.data.batch_size;
    const limit = recipe.eval.max_batches === null ? Infinity : recipe.eval.max_batches * size;
    const samples: PreparedSample[] = [];
    const loader = createLoader<PreparedSample[]>({
      source: recipe.data.shards,
      batchSize: 16,
      seed: recipe.seed,
      shuffle: false,
      workers: recipe.data.workers,
      prefetchBytes: recipe.data.prefetch_bytes,
      collate: (batch) => {
        const out: PreparedSample[] = [];
        for (const s of batch) {
          if (s.padding || !isHeldOut(s.video_id, recipe.data.heldout_fraction, recipe.seed)) continue;
          // Held-out videos are never in the profile pools, so their profile comes from training videos.
          const r = renderSample(recipe, this.session.tokenizer, this.session.dataset, s, this.session.tokensPerFrame);
          if (!('skip' in r)) out.push(prepared(s, r, recipe.data.use_video, this.session.tokensPerFrame * this.session.featureDim));
        }
        return out;
      },
    });
    for await (const batch of loader) {
      samples.push(...batch);
      if (samples.length >= limit) break;
    }
    const kept = samples.slice(0, limit === Infinity ? undefined : limit);
    const out: PackedBatch[] = [];
    for (let i = 0; i < kept.length; i += size) out.push(packBatch(kept.slice(i, i + size), this.session.featureDim));
    return out;
  }

  async run(step: number): Promise<EvalMetric> {
    this.batches ??= await this.collect();
    let sum = 0;
    let count = 0;
    let focusSum = 0;
    let focusCount = 0;
    let samples = 0;
    for (const batch of this.batches) {
      const { nll, focus } = await targetLosses(this.session.model, batch);
      for (let i = 0; i < nll.length; i++) {
        sum += nll[i]!;
        if (focus[i]) {
          focusSum += nll[i]!;
          focusCount += 1;
        }
      }
      count += nll.length;
      samples += batch.batch;
    }
    const loss = count > 0 ? sum / count : NaN;
    return {
      type: 'eval',
      step,
      loss,
      perplexity: Math.exp(loss),
      tokens: count,
      samples,
      focus_loss: focusCount > 0 ? focusSum / focusCount : null,
      focus_tokens: focusCount,
      time: new Date().toISOString(),
    };
  }

  dispose(): void {
    this.batches = null;
  }
}

export { forwardInput };
