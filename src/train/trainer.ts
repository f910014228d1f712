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
import { ABORTED, untilAborted } from '../util/abort.js';
import { AdamW, clipGradNorm, type Param } from './adamw.js';
import { forwardInput, lossSum, promptTokenizer, trainableParams } from './bridge.js';
import { readCheckpoint, resolveCheckpoint, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { scanDataset, isHeldOut, type DatasetSummary } from './dataset.js';
import { MetricsWriter, type EvalMetric, type TrainMetric } from './metrics.js';
import { packBatch, type PackedBatch, type PreparedSample } from './pack.js';
import type { PromptTokenizer, RenderedPrompt, SkipReason } from './prompt.js';
import { formatRecipe, type Recipe } from './recipe.js';
import { Rng } from '../util/random.js';
import { lrAt, warmupStepsFor } from './schedule.js';
import { EpochTally } from './epoch-tally.js';
import { Evaluator } from './evaluator.js';
import { prepared, renderSample } from './render.js';
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
  /** Token count of the shortest sample skipped as too long; null when none. */
  shortestTooLong: number | null;
  /** Samples repeated only to even out ranks. */
  padding: number;
}

export interface TrainOptions {
  /** Draws the progress bar; null for none. Default process.stderr. */
  progressStream?: NodeJS.WriteStream | null;
  /** Lines of information (start, evals, checkpoints). Default: stderr. */
  log?: (line: string) => void;
  /** Polled after each step: true saves a checkpoint and stops. */
  shouldStop?: () => boolean;
  /**
   * Aborting stops the run (Ctrl-C): after the step in progress, with a checkpoint; while waiting
   * for data (a stalled or slow loader), at once, with a checkpoint of the last finished step.
   */
  signal?: AbortSignal;
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
  /** `tokens`: the length of a sample skipped as too long. */
  prepare: (s: Sample) => { sample?: PreparedSample; skip?: SkipReason | 'held-out'; tokens?: number; prompt?: RenderedPrompt };
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
    if ('skip' in rendered) return { skip: rendered.skip, tokens: rendered.tokens };
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
  // Said when memory matters: layers recomputed, or a quarter of a limit in use.
  if (m.checkpointing || m.tensorBytes > 0.25 * m.tensorLimit.bytes || m.hostBytes > 0.25 * m.hostLimit.bytes) log(`train: memory at the longest sample: about ${gib(m.tensorBytes)} of tensors (${m.tensorLimit.source} holds ${gib(m.tensorLimit.bytes)}), ${gib(m.hostBytes)} in all; gradient checkpointing ${m.checkpointing ? 'on' : 'off'}`);
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
      const mb: MicroBatch = { epoch: ctx.epoch, index: ctx.batchIndex, samples: [], heldOut: 0, skipped: {}, shortestTooLong: null, padding: 0 };
      for (const s of samples) {
        if (s.padding) {
          mb.padding += 1;
          continue;
        }
        const r = session.prepare(s);
        if (r.sample) mb.samples.push(r.sample);
        else if (r.skip === 'held-out') mb.heldOut += 1;
        else if (r.skip) {
          mb.skipped[r.skip] = (mb.skipped[r.skip] ?? 0) + 1;
          if (r.tokens !== undefined) mb.shortestTooLong = Math.min(mb.shortestTooLong ?? Infinity, r.tokens);
        }
      }
      return mb;
    },
  });
  let iterator: AsyncIterator<MicroBatch> = loader[Symbol.asyncIterator]();
  // A pass that starts mid-epoch (a resumed run) is not a whole epoch.
  let tally = new EpochTally(loader.state().batches === 0);
  const limits = { maxTokens: recipe.prompt.max_tokens, heldoutFraction: recipe.data.heldout_fraction };
  let emptyEpochs = 0;
  const nextMicroBatch = async (): Promise<MicroBatch> => {
    for (;;) {
      const r = await iterator.next();
      if (!r.done) {
        emptyEpochs = 0;
        tally.add({ ...r.value, trained: r.value.samples.length });
        return r.value;
      }
      // End of an epoch: one without a trainable sample would repeat forever.
      tally.check(limits);
      if (++emptyEpochs > 1) throw new RpvError('train: the loader yielded no batch for a whole epoch');
      tally = new EpochTally(true);
      iterator = loader[Symbol.asyncIterator]();
    }
  };
  // A wait for data ends early when the run is aborted; the abandoned next() may settle later.
  let abandoned: Promise<MicroBatch> | null = null;
  const nextUnlessAborted = async (): Promise<MicroBatch | null> => {
    if (options.signal?.aborted) return null;
    const pending = nextMicroBatch();
    const result = await untilAborted(pending, options.signal);
    if (result !== ABORTED) return result;
    abandoned = pending;
    return null;
  };

  const evaluator = new Evaluator(session);
  const progress = new Progress({ label: 'train', total: totalSteps, unit: 'steps', stream: options.progressStream === undefined ? process.stderr : options.progressStream });
  progress.done = step;
  const losses: number[] = [];
  let lastEval: EvalMetric | null = null;
  let checkpoint: string | null = null;
  // The step the last checkpoint holds (nothing to save before the first step).
  let checkpointStep = step;
  let stopped = false;
  const lrFor = (s: number) => (group: string) =>
    lrAt(s, {
      peakLr: group === 'projector' ? (recipe.optimizer.projector_lr ?? recipe.optimizer.lr) : recipe.optimizer.lr,
      totalSteps,
      warmupSteps,
      type: recipe.scheduler.type,
      minLrRatio: recipe.scheduler.min_lr_ratio,
    });
  /** `at`: the loader position and skip counts to record (default: now). */
  const saveCheckpoint = async (at: { loader: LoaderState; skipped: Record<string, number> } = { loader: loader.state(), skipped }) => {
    const trainable = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of params) trainable.set(p.name, { shape: [...p.variable.shape], data: new Float32Array(await p.variable.data()) });
    const state: TrainerState = {
      step,
      epoch: at.loader.epoch,
      loader: at.loader,
      rng: rng.state(),
      skipped: { ...at.skipped },
      tokens: tokensSeen,
      totalSteps,
      lastEval,
    };
    checkpointStep = step;
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
      // Where this step starts: a stop before it is computed saves the run as of here.
      const before = { loader: loader.state(), skipped: { ...skipped } };
      let waitMs = 0;
      const micro: PackedBatch[] = [];
      while (micro.length < recipe.train.grad_accum_steps) {
        const t0 = performance.now();
        const mb = await nextUnlessAborted();
        waitMs += performance.now() - t0;
        if (!mb) break;
        for (const [reason, n] of Object.entries(mb.skipped)) skipped[reason] = (skipped[reason] ?? 0) + n;
        if (mb.samples.length === 0) continue;
        micro.push(packBatch(mb.samples, session.featureDim));
      }
      if (micro.length < recipe.train.grad_accum_steps) {
        stopped = true;
        if (step > checkpointStep) {
          const dir = await saveCheckpoint(before);
          log(`\ninterrupted while waiting for data: checkpoint ${dir} (step ${step})`);
        } else log(`\ninterrupted while waiting for data at step ${step}${checkpoint ? `; last checkpoint ${checkpoint}` : ''}`);
        break;
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
      let evalInterrupted = false;
      if ((recipe.eval.every_steps > 0 && step % recipe.eval.every_steps === 0) || last) {
        const ev = await evaluator.run(step, options.signal);
        evalInterrupted = ev === null;
        if (ev) {
          lastEval = ev;
          await metrics.write(ev);
          log(`\neval step ${step}: loss ${ev.loss.toFixed(4)} ppl ${ev.perplexity.toFixed(2)}${ev.focus_loss !== null ? ` focus-word loss ${ev.focus_loss.toFixed(4)} (${ev.focus_tokens} tokens)` : ''}`);
        } else log(`\ninterrupted while reading the held-out samples: no eval at step ${step}`);
      }
      stopped = (!last && ((options.shouldStop?.() ?? false) || (options.signal?.aborted ?? false))) || evalInterrupted;
      if ((recipe.checkpoint.every_steps > 0 && step % recipe.checkpoint.every_steps === 0) || last || stopped) {
        const dir = await saveCheckpoint();
        log(`${stopped ? '\ninterrupted: ' : '\n'}checkpoint ${dir}`);
      }
      if (stopped) break;
    }
    progress.finish();
    if (step >= totalSteps) await exportAdapter(model, recipe, path.join(runDir, 'adapter'));
  } finally {
    // A generator's return() waits for its pending next(): after an abandoned wait, stop the
    // loader's workers instead (in the background: a stalled read must not hold the caller).
    if (abandoned) {
      (abandoned as Promise<MicroBatch>).catch(() => undefined);
      loader.close().catch(() => undefined);
    } else await iterator.return?.();
    optimizer.dispose();
    evaluator.dispose();
  }
  return { steps: step, totalSteps, stopped, lastEval, checkpoint, losses, skipped, backend: session.backend };
}

export { forwardInput };
