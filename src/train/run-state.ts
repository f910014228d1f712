/**
 * What a run carries from step to step and saves in a checkpoint: step, tokens, the dropout RNG,
 * skip counts, the last evaluation. `startRun` begins a run or restores one from a checkpoint
 * (`recipe.resume`): exact float32 parameters, optimizer moments, loader position, RNG state.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { LoaderState } from '../loader/state.js';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { AdamW } from './adamw.js';
import YAML from 'yaml';
import { openCheckpointForResume, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { MetricsWriter, type EvalMetric } from './metrics.js';
import { formatRecipe, type Recipe } from './recipe.js';
import { claimRunFolder } from './run-folder.js';
import { modelIdentity } from '../model/identity.js';
import { errorMessage } from '../util/errors.js';
import { Rng } from '../util/random.js';
import { exportAdapter } from './model-io.js';
import type { TrainingSession } from './session.js';
import { trainWorldSize } from './distributed.js';
import { warmupStepsFor } from './schedule.js';

export interface RunState {
  step: number;
  tokensSeen: number;
  rng: Rng;
  skipped: Record<string, number>;
  lastEval: EvalMetric | null;
  /** The latest checkpoint written by this process. */
  checkpoint: string | null;
  /** The step the last checkpoint holds (nothing to save before the first step). */
  checkpointStep: number;
  /** Where the resumed loader starts; null for a new run. */
  loaderState: LoaderState | null;
  metrics: MetricsWriter;
  recipeYaml: string;
  /** The checkpoint a resumed run started from. */
  resumedFrom: string | null;
  /** The base model's identity (src/model/identity.ts), saved in each checkpoint. */
  baseModel: { path: string; sha256: string };
}

/** The recipe keys a resumed run must keep: they shape or define what was trained. */
const KEPT_ON_RESUME = ['lora.r', 'lora.alpha', 'lora.dropout', 'lora.target_modules', 'lora.rslora', 'projector.type', 'train.projector', 'data.use_video'] as const;

const valueAt = (obj: unknown, key: string): unknown => key.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
const shown = (v: unknown) => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));

/** `key: the run was trained with A, this recipe has B` for each kept key that changed. */
function changedSettings(saved: unknown, recipe: Recipe): string[] {
  const out: string[] = [];
  for (const key of KEPT_ON_RESUME) {
    const was = valueAt(saved, key);
    const now = valueAt(recipe, key);
    if (was === undefined || JSON.stringify(was) === JSON.stringify(now)) continue;
    out.push(`${key}: the run was trained with ${shown(was)}, this recipe has ${shown(now)}`);
  }
  return out;
}

/** A new run, or the one `recipe.resume` names restored into `session`'s parameters and `optimizer`. */
export async function startRun(session: TrainingSession, optimizer: AdamW, log: (line: string) => void): Promise<RunState> {
  const { recipe, params } = session;
  const runDir = recipe.output_dir;
  let recipeYaml = formatRecipe({ ...recipe, resume: null, overwrite_output_dir: false, break_lock: false });
  const identity = await modelIdentity(recipe.model.path);
  const baseModel = { path: recipe.model.path, sha256: identity.sha256 };
  let run: RunState;
  if (recipe.resume) {
    const { dir, contents: ckpt } = await openCheckpointForResume(recipe.resume, log);
    const refuse = (why: string) => new RpvError(`train: resume=${recipe.resume}: ${why}`);
    let savedRecipe: unknown;
    try {
      savedRecipe = YAML.parse(ckpt.recipeYaml);
    } catch (err) {
      throw refuse(`${path.join(dir, 'recipe.yaml')}: invalid YAML: ${errorMessage(err).split('\n')[0]}`);
    }
    const changed = changedSettings(savedRecipe, recipe);
    if (changed.length > 0) throw refuse(`${changed.join('; ')}; a resumed run keeps these (set them back, or start a new run in another output_dir)`);
    const saved = ckpt.state.baseModel as { path?: string; sha256?: string } | undefined;
    if (!saved?.sha256) log(`train: ${dir} does not record the identity of its base model (written by an older rpv): model.path is not checked`);
    else if (saved.sha256 !== baseModel.sha256) {
      throw refuse(
        `model.path ${recipe.model.path} is not the base model the run was trained on (${saved.path ?? '?'}): its weights' identity is ${baseModel.sha256.slice(0, 12)}…, the run's ${saved.sha256.slice(0, 12)}…; resume with the run's base model, or start a new run`,
      );
    }
    const { checkRunEncoder } = await import('./encoder-check.js');
    checkRunEncoder('train --resume', dir, ckpt.state.encoder, recipe.data.shards, session.dataset.index.encoder.id);
    for (const p of params) {
      const values = ckpt.trainable.get(p.name);
      if (!values) throw new RpvError(`train: checkpoint ${dir}: no values for ${p.name} (was it trained with another recipe?)`);
      if (values.data.length !== p.variable.size) {
        throw new RpvError(`train: checkpoint ${dir}: ${p.name} has ${values.data.length} values, this run's parameter has ${p.variable.size} (${p.group === 'projector' ? 'the base model or the shards\' feature size differs' : 'lora.r or the base model differs'} from the run's)`);
      }
      tf.tidy(() => p.variable.assign(tf.tensor(values.data, p.variable.shape, 'float32')));
    }
    optimizer.loadState(ckpt.optimizer);
    if (keepGlobalBatch(session, savedRecipe, ckpt.state.ranks, refuse, log)) recipeYaml = formatRecipe({ ...recipe, resume: null, overwrite_output_dir: false, break_lock: false });
    const step = ckpt.state.step;
    await claimRunFolder(runDir, { resumedFrom: dir, resumedStep: step, overwrite: recipe.overwrite_output_dir }, log);
    log(`train: resumed from ${dir} at step ${step}`);
    run = {
      step,
      tokensSeen: ckpt.state.tokens,
      rng: new Rng(ckpt.state.rng),
      skipped: { ...ckpt.state.skipped },
      lastEval: null,
      checkpoint: null,
      checkpointStep: step,
      loaderState: ckpt.state.loader as LoaderState | null,
      metrics: await MetricsWriter.open(runDir, step),
      recipeYaml,
      resumedFrom: dir,
      baseModel,
    };
  } else {
    await claimRunFolder(runDir, { resumedFrom: null, resumedStep: 0, overwrite: recipe.overwrite_output_dir }, log);
    run = {
      step: 0,
      tokensSeen: 0,
      rng: new Rng(recipe.seed),
      skipped: {},
      lastEval: null,
      checkpoint: null,
      checkpointStep: 0,
      loaderState: null,
      metrics: await MetricsWriter.open(runDir),
      recipeYaml,
      resumedFrom: null,
      baseModel,
    };
  }
  const recipeFile = path.join(runDir, 'recipe.yaml');
  await writeFileAtomic(recipeFile, recipeYaml).catch((err: unknown) => {
    throw new RpvError(`train: cannot write ${recipeFile}: ${errorMessage(err)}`);
  });
  return run;
}

/**
 * A run resumed on another number of ranks keeps its global batch (ranks x grad_accum_steps
 * micro-batches) unless the recipe sets another grad_accum_steps than the run's: the accumulation
 * is rescaled, and so are the step counts of an epoch-based run. True when it changed.
 */
function keepGlobalBatch(session: TrainingSession, savedRecipe: unknown, savedRanks: unknown, refuse: (why: string) => Error, log: (line: string) => void): boolean {
  const { recipe } = session;
  const before = typeof savedRanks === 'number' ? savedRanks : 1;
  const ranks = trainWorldSize();
  const accum = valueAt(savedRecipe, 'train.grad_accum_steps');
  if (before === ranks || typeof accum !== 'number') return false;
  const global = before * accum;
  if (recipe.train.grad_accum_steps !== accum) {
    log(`train: resume: ${before} -> ${ranks} ranks with train.grad_accum_steps=${recipe.train.grad_accum_steps} (the run's was ${accum}): the global batch changes from ${global} to ${ranks * recipe.train.grad_accum_steps} micro-batches`);
    return false;
  }
  if (global % ranks !== 0) {
    throw refuse(`the run's global batch is ${before} rank(s) x ${accum} micro-batches = ${global}, which ${ranks} ranks cannot share equally; run on a number of ranks that divides ${global}, or set train.grad_accum_steps (the global batch then becomes ${ranks} x it)`);
  }
  recipe.train.grad_accum_steps = global / ranks;
  if (recipe.train.max_steps === null) {
    const stepsPerEpoch = Math.max(1, Math.floor(session.batchesPerEpoch / global));
    session.totalSteps = Math.max(1, Math.ceil(recipe.train.epochs * stepsPerEpoch));
    session.warmupSteps = warmupStepsFor(session.totalSteps, recipe.scheduler.warmup_ratio, recipe.scheduler.warmup_steps);
  }
  log(`train: resume: ${before} -> ${ranks} ranks: train.grad_accum_steps ${accum} -> ${global / ranks}, keeping the global batch of ${global} micro-batches`);
  return true;
}

/** Writes a checkpoint of `run` at its step; `at`: the loader position and skip counts to record. */
export async function saveCheckpoint(session: TrainingSession, optimizer: AdamW, run: RunState, at: { loader: LoaderState; skipped: Record<string, number> }): Promise<string> {
  const { recipe, params, model } = session;
  const trainable = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const p of params) trainable.set(p.name, { shape: [...p.variable.shape], data: new Float32Array(await p.variable.data()) });
  const state: TrainerState = {
    step: run.step,
    epoch: at.loader.epoch,
    loader: at.loader,
    rng: run.rng.state(),
    skipped: { ...at.skipped },
    tokens: run.tokensSeen,
    encoder: session.dataset.index.encoder.id,
    totalSteps: session.totalSteps,
    lastEval: run.lastEval,
    baseModel: run.baseModel,
    // The global batch is ranks x grad_accum_steps: a resume on another number of ranks keeps it.
    ranks: trainWorldSize(),
  };
  run.checkpointStep = run.step;
  run.checkpoint = await writeCheckpoint(recipe.output_dir, {
    trainable,
    optimizer: await optimizer.state(),
    state,
    recipeYaml: run.recipeYaml,
    keepLast: recipe.checkpoint.keep_last,
    exportAdapter: async (dir) => {
      await exportAdapter(model, recipe, dir);
    },
  });
  return run.checkpoint;
}
