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
import os from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { createLoader } from '../loader/index.js';
import type { Sample } from '../loader/collate.js';
import { initBackend, type BackendInfo } from '../model/backend.js';
import type { CausalLM } from '../model/decoder.js';
import { weightHeapBytes } from '../model/load.js';
import { Progress } from '../util/progress.js';
import { errorMessage, RpvError } from '../util/errors.js';
import { AdamW, type Param } from './adamw.js';
import { forwardInput, promptTokenizer, trainableParams } from './bridge.js';
import { scanDataset, isHeldOut, type DatasetSummary } from './dataset.js';
import type { EvalMetric, TrainMetric } from './metrics.js';
import type { PreparedSample } from './pack.js';
import type { PromptTokenizer, RenderedPrompt, SkipReason } from './prompt.js';
import { checkStageLengths, resolveRecipe, type Recipe, type RecipeInput } from './recipe.js';
import { lrAt, warmupStepsFor } from './schedule.js';
import { Evaluator } from './evaluator.js';
import { MicroBatches } from './micro-batches.js';
import { fillRatio } from './packing.js';
import { saveCheckpoint, startRun, type RunState } from './run-state.js';
import { lockRunFolder } from './run-folder.js';
import { optimizerStep } from './step.js';
import { prepared, renderSample } from './render.js';
import { loadTrainModel, exportAdapter } from './model-io.js';
import { gib, nativeScratchBytes, planMemory, type MemoryPlan } from './memory.js';
import { Collective, distributedEnv, trainWorldSize } from './distributed.js';
import { DataParallel } from './data-parallel.js';

/** Rendered prompts kept across epochs (about 1-2 KB each). */
const PROMPT_CACHE_ENTRIES = 100_000;

/**
 * With `train.on_nonfinite: skip`, this many steps in a row with a NaN or infinite loss or
 * gradient norm stop the run: the parameters did not change between them, so the next steps
 * would most likely fail the same way.
 */
export const NONFINITE_STEPS_IN_ROW = 3;

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
  /** Called with each checkpoint once it is complete, and with the one a resumed run starts from. */
  onCheckpoint?: (dir: string, step: number) => void;
  /**
   * One `log` line per step written to metrics.jsonl (`train.log_every_steps`), for a terminal
   * without the progress bar (`rpv train --progress=false`) or a log file. Default false.
   */
  logSteps?: boolean;
}

export interface TrainResult {
  steps: number;
  totalSteps: number;
  stopped: boolean;
  lastEval: EvalMetric | null;
  checkpoint: string | null;
  losses: number[];
  skipped: Record<string, number>;
  /** Steps whose update was not applied because the loss or gradient norm was not finite (train.on_nonfinite: skip). */
  updatesSkipped: number;
  backend: BackendInfo;
}

import type { TrainingSession } from './session.js';
export type { TrainingSession } from './session.js';

export async function openSession(recipe: Recipe, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<TrainingSession> {
  const backend = await initBackend({ backend: recipe.model.backend, threads: recipe.model.threads ?? undefined, log });
  const dataset = await scanDataset(recipe.data.shards, { heldoutFraction: recipe.data.heldout_fraction, seed: recipe.seed, verify: recipe.data.verify });
  const schema = dataset.index.schema;
  if (dataset.dialogues.train === 0) {
    throw new RpvError(`train: ${recipe.data.shards}: no training dialogues (all ${dataset.dialogues.heldout} are held out; lower data.heldout_fraction)`);
  }
  const model = await loadTrainModel(recipe, schema.featureDim, { encoderId: dataset.index.encoder.id });
  const tokenizer = promptTokenizer(model.tokenizer!);
  const probe = createLoader({ source: recipe.data.shards, batchSize: recipe.data.batch_size, seed: recipe.seed, shuffle: recipe.data.shuffle, workers: 0, rank: 0, worldSize: 1 });
  const info = await probe.describe();
  const batchesPerEpoch = info.batchesPerEpoch;
  // A step takes grad_accum_steps micro-batches on each rank (src/train/data-parallel.ts).
  const stepsPerEpoch = Math.max(1, Math.floor(batchesPerEpoch / (recipe.train.grad_accum_steps * trainWorldSize())));
  const totalSteps = recipe.train.max_steps ?? Math.max(1, Math.ceil(recipe.train.epochs * stepsPerEpoch));
  try {
    checkStageLengths(recipe, totalSteps, stepsPerEpoch);
  } catch (err) {
    model.dispose();
    throw err;
  }
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
    scratchBytes: backend.nativeMatmul.active
      ? nativeScratchBytes({ config: model.config, threads: backend.threads, maxTokens: recipe.prompt.max_tokens, batchSize: recipe.data.batch_size })
      : 0,
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

/**
 * Run (or continue, with `resume`) a training run. `input` is a recipe as `loadRecipe` returns it,
 * or only the keys a program sets (`{ output_dir, model: { path }, data: { shards } }` at least):
 * the rest take their defaults, and every key is validated as in a YAML recipe.
 */
export async function train(input: Recipe | RecipeInput, options: TrainOptions = {}): Promise<TrainResult> {
  let recipe = resolveRecipe(input, [], 'train');
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  // More than one rank (WORLD_SIZE > 1): join the job first, so a wrong MASTER_ADDR:MASTER_PORT
  // fails before the model loads. Ranks other than 0 write nothing in output_dir: their run
  // folder is a temporary one, removed at the end.
  const denv = distributedEnv();
  const dp = denv ? new DataParallel(await Collective.join(denv)) : null;
  const scratch = dp && dp.rank > 0 ? await mkdtemp(path.join(os.tmpdir(), `rpv-rank-${dp.rank}-`)) : null;
  if (scratch) recipe = { ...recipe, output_dir: scratch };
  try {
    // One trainer per output folder, from before anything in it is read or written.
    const lock = await lockRunFolder(recipe.output_dir, log, { breakLock: recipe.break_lock });
    try {
      const session = await openSession(recipe, log);
      try {
        return await runLoop(session, options, log, dp);
      } finally {
        session.dispose();
      }
    } finally {
      await lock.release();
    }
  } finally {
    dp?.collective.leave();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The loop: gather a step's micro-batches, take an optimizer step, log, evaluate, checkpoint,
 * until `totalSteps` or a stop (`shouldStop`, the signal, an interrupted eval or data wait).
 */
async function runLoop(session: TrainingSession, options: TrainOptions, log: (line: string) => void, dp: DataParallel | null = null): Promise<TrainResult> {
  // Rank 0 alone writes checkpoints and the adapter (the others' metrics go to a temporary folder).
  const primary = (dp?.rank ?? 0) === 0;
  const ranks = dp?.worldSize ?? 1;
  const { recipe, model, params } = session;
  logMemoryPlan(session.memory, log);
  const optimizer = new AdamW(params, {
    beta1: recipe.optimizer.beta1,
    beta2: recipe.optimizer.beta2,
    eps: recipe.optimizer.eps,
    weightDecay: recipe.optimizer.weight_decay,
  });
  const run = await startRun(session, optimizer, log);
  // After startRun: a resume on another number of ranks may rescale an epoch-based run's steps.
  const { totalSteps } = session;
  if (run.resumedFrom) options.onCheckpoint?.(run.resumedFrom, run.step);
  const data = new MicroBatches(session, run.loaderState);
  const evaluator = new Evaluator(session, dp && { rank: dp.rank, worldSize: dp.worldSize, sum: (v) => dp.collective.allreduceSum(v, `step ${run.step}: held-out evaluation`) });
  const { heldout } = session.dataset.dialogues;
  if (heldout === 0) {
    const videos = session.dataset.videos.train + session.dataset.videos.heldout;
    log(`train: no held-out dialogues (data.heldout_fraction ${recipe.data.heldout_fraction} of ${videos} videos selects none): no held-out evaluation`);
  }
  const progress = new Progress({ label: 'train', total: totalSteps, unit: 'steps', stream: options.progressStream === undefined ? process.stderr : options.progressStream });
  progress.done = run.step;
  const losses: number[] = [];
  let stopped = false;
  let updatesSkipped = 0;
  let nonfiniteInRow = 0;
  const checkpointNow = async (at = { loader: data.state(), skipped: run.skipped }) => {
    if (!primary) return '(rank 0 writes the checkpoints)';
    const dir = await saveCheckpoint(session, optimizer, run, at);
    options.onCheckpoint?.(dir, run.checkpointStep);
    return dir;
  };
  try {
    // Every rank starts from the same parameters (the same seed, or the same checkpoint).
    if (dp && dp.checkEvery > 0) await dp.checkParams(params, run.step);
    while (run.step < totalSteps) {
      const stage: 'projector' | 'lora' = run.step < recipe.train.projector_warmup_steps ? 'projector' : 'lora';
      const active = stage === 'projector' ? params.filter((p) => p.group === 'projector') : params;
      const stepStart = performance.now();
      // Where this step starts: a stop before it is computed saves the run as of here.
      const before = { loader: data.state(), skipped: { ...run.skipped } };
      const gathered = await data.gather(recipe.train.grad_accum_steps * ranks, run.skipped, options.signal);
      if (!gathered) {
        stopped = true;
        if (run.step > run.checkpointStep) {
          const dir = await checkpointNow(before);
          log(`\ninterrupted while waiting for data: checkpoint ${dir} (step ${run.step})`);
        } else log(`\ninterrupted while waiting for data at step ${run.step}${run.checkpoint ? `; last checkpoint ${run.checkpoint}` : ''}`);
        break;
      }
      const { micro, waitMs } = gathered;
      const lrs = learningRates(session, run.step);
      let result;
      if (dp) {
        // The seeds a single process would draw for the whole step; this rank trains its share.
        const seeds = micro.map(() => run.rng.nextSeed());
        const share = dp.split(micro, seeds);
        const stepTokens = micro.reduce((a, b) => a + b.trainedTokens, 0);
        const wantStop = (options.shouldStop?.() ?? false) || (options.signal?.aborted ?? false);
        const at = run.step + 1;
        result = await optimizerStep(model, optimizer, active, share.own, run.rng, recipe.optimizer.max_grad_norm, lrs, {
          seeds: share.seeds,
          totalTokens: stepTokens,
          reduce: (grads, loss, own) => dp.reduce(active, grads, loss, own, stepTokens, wantStop, at),
        });
      } else result = await optimizerStep(model, optimizer, active, micro, run.rng, recipe.optimizer.max_grad_norm, lrs);
      run.step += 1;
      run.tokensSeen += result.trainedTokens;
      const stepSec = (performance.now() - stepStart) / 1000;
      const metric: TrainMetric = {
        type: 'train',
        step: run.step,
        stage,
        loss: result.loss,
        lr: lrs('lora'),
        grad_norm: result.gradNorm,
        tokens: result.trainedTokens,
        tokens_per_sec: micro.reduce((a, b) => a + b.tokens, 0) / stepSec,
        fill: fillRatio(micro),
        step_sec: stepSec,
        loader_wait_sec: waitMs / 1000,
        skipped: Object.values(run.skipped).reduce((a, b) => a + b, 0),
        ...(dp ? { allreduce_sec: dp.lastReduceMs / 1000, allreduce_bytes: dp.lastReduceBytes } : {}),
        ...(result.applied ? {} : { update_skipped: true }),
        time: new Date().toISOString(),
      };
      losses.push(result.loss);
      nonfiniteInRow = result.applied ? 0 : nonfiniteInRow + 1;
      if (!result.applied) updatesSkipped += 1;
      if (run.step % recipe.train.log_every_steps === 0 || run.step === totalSteps || !result.applied) {
        await run.metrics.write(metric);
        if (options.logSteps) log(formatStepLine(metric, totalSteps));
      }
      options.onStep?.(metric);
      if (!result.applied) {
        const what = `non-finite loss ${result.loss} (grad_norm ${result.gradNorm})`;
        if (recipe.train.on_nonfinite === 'stop' || nonfiniteInRow >= NONFINITE_STEPS_IN_ROW) {
          const inRow = recipe.train.on_nonfinite === 'stop' ? `${what}: update not applied` : `${what} for ${nonfiniteInRow} steps in a row: updates not applied`;
          const last = run.checkpoint ?? run.resumedFrom;
          throw new RpvError(`train: step ${run.step}: ${inRow}, run stopped (train.on_nonfinite=${recipe.train.on_nonfinite}); ${last ? `last good checkpoint ${last}` : 'no checkpoint was written'}`);
        }
        log(`\ntrain: step ${run.step}: ${what}: update not applied (train.on_nonfinite=skip; ${nonfiniteInRow} in a row, ${NONFINITE_STEPS_IN_ROW} stop the run)`);
      }
      progress.tick(1, { loss: result.loss, lr: metric.lr, 'tok/s': Math.round(metric.tokens_per_sec), wait: `${(waitMs / 1000).toFixed(2)}s` });

      const last = run.step === totalSteps;
      let evalInterrupted = false;
      if (heldout > 0 && ((recipe.eval.every_steps > 0 && run.step % recipe.eval.every_steps === 0) || last)) {
        evalInterrupted = !(await evaluate(evaluator, run, options.signal, log));
      }
      // On several ranks, every rank stops at the same step: when one asked before this step's all-reduce.
      const stopAsked = dp ? dp.stopRequested : (options.shouldStop?.() ?? false) || (options.signal?.aborted ?? false);
      stopped = (!last && stopAsked) || evalInterrupted;
      if (dp && dp.checkEvery > 0 && run.step % dp.checkEvery === 0) await dp.checkParams(params, run.step);
      if ((recipe.checkpoint.every_steps > 0 && run.step % recipe.checkpoint.every_steps === 0) || last || stopped) {
        const dir = await checkpointNow();
        log(`${stopped ? '\ninterrupted: ' : '\n'}checkpoint ${dir}`);
      }
      if (stopped) break;
    }
    progress.finish();
    if (run.step >= totalSteps && primary) {
      const dir = path.join(recipe.output_dir, 'adapter');
      await exportAdapter(model, recipe, dir).catch((err: unknown) => {
        throw new RpvError(`train: step ${run.step}: cannot write the final adapter in ${dir}: ${errorMessage(err)}; checkpoint ${run.checkpoint} holds the trained weights (its adapter/ folder)`);
      });
    }
  } finally {
    await data.close();
    optimizer.dispose();
    evaluator.dispose();
  }
  return { steps: run.step, totalSteps, stopped, lastEval: run.lastEval, checkpoint: run.checkpoint, losses, skipped: run.skipped, updatesSkipped, backend: session.backend };
}

/** Said when memory matters: layers recomputed, or a quarter of a limit in use. */
function logMemoryPlan(m: MemoryPlan, log: (line: string) => void): void {
  if (m.checkpointing || m.tensorBytes > 0.25 * m.tensorLimit.bytes || m.hostBytes > 0.25 * m.hostLimit.bytes) log(`train: memory at the longest sample: about ${gib(m.tensorBytes)} of tensors (${m.tensorLimit.source} holds ${gib(m.tensorLimit.bytes)}), ${gib(m.hostBytes)} in all; gradient checkpointing ${m.checkpointing ? 'on' : 'off'}`);
}

/** The learning rate of each parameter group (LoRA, projector) at `step`. */
function learningRates(session: TrainingSession, step: number): (group: string) => number {
  const { recipe } = session;
  return (group) =>
    lrAt(step, {
      peakLr: group === 'projector' ? (recipe.optimizer.projector_lr ?? recipe.optimizer.lr) : recipe.optimizer.lr,
      totalSteps: session.totalSteps,
      warmupSteps: session.warmupSteps,
      type: recipe.scheduler.type,
      minLrRatio: recipe.scheduler.min_lr_ratio,
    });
}

/** Held-out evaluation at the run's step, written and logged; false when `signal` interrupted it. */
async function evaluate(evaluator: Evaluator, run: RunState, signal: AbortSignal | undefined, log: (line: string) => void): Promise<boolean> {
  const ev = await evaluator.run(run.step, signal);
  if (!ev) {
    log(`\ninterrupted while reading the held-out samples: no eval at step ${run.step}`);
    return false;
  }
  if (ev.samples === 0) {
    log(`\neval step ${run.step}: none of the held-out dialogues could be scored (each is longer than prompt.max_tokens or has no turn of its role)`);
    return true;
  }
  run.lastEval = ev;
  await run.metrics.write(ev);
  log(`\neval step ${run.step}: loss ${ev.loss.toFixed(4)} ppl ${ev.perplexity.toFixed(2)}${ev.focus_loss !== null ? ` focus-word loss ${ev.focus_loss.toFixed(4)} (${ev.focus_tokens} tokens)` : ''}`);
  return true;
}

export { forwardInput };

/** A logged step as one line: `step 2/4 lora: loss 5.1234 lr 1.00e-2 grad_norm 0.873 tok/s 1234 wait 0.00s`. */
export function formatStepLine(m: TrainMetric, totalSteps: number): string {
  return (
    `step ${m.step}/${totalSteps} ${m.stage}: loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} grad_norm ${m.grad_norm.toFixed(3)} ` +
    `tok/s ${Math.round(m.tokens_per_sec)} wait ${m.loader_wait_sec.toFixed(2)}s`
  );
}
