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
import { readCheckpoint, resolveCheckpoint, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { MetricsWriter, type EvalMetric } from './metrics.js';
import { formatRecipe } from './recipe.js';
import { Rng } from '../util/random.js';
import { exportAdapter } from './model-io.js';
import type { TrainingSession } from './session.js';

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
}

/** A new run, or the one `recipe.resume` names restored into `session`'s parameters and `optimizer`. */
export async function startRun(session: TrainingSession, optimizer: AdamW, log: (line: string) => void): Promise<RunState> {
  const { recipe, params } = session;
  const runDir = recipe.output_dir;
  const recipeYaml = formatRecipe({ ...recipe, resume: null });
  let run: RunState;
  if (recipe.resume) {
    const dir = await resolveCheckpoint(recipe.resume);
    const ckpt = await readCheckpoint(dir);
    const { checkRunEncoder } = await import('./encoder-check.js');
    checkRunEncoder('train --resume', dir, ckpt.state.encoder, recipe.data.shards, session.dataset.index.encoder.id);
    for (const p of params) {
      const saved = ckpt.trainable.get(p.name);
      if (!saved) throw new RpvError(`train: checkpoint ${dir}: no values for ${p.name} (was it trained with another recipe?)`);
      if (saved.data.length !== p.variable.size) {
        throw new RpvError(`train: checkpoint ${dir}: ${p.name} has ${saved.data.length} values, this run's parameter has ${p.variable.size}`);
      }
      tf.tidy(() => p.variable.assign(tf.tensor(saved.data, p.variable.shape, 'float32')));
    }
    optimizer.loadState(ckpt.optimizer);
    const step = ckpt.state.step;
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
    };
  } else {
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
    };
  }
  await writeFileAtomic(path.join(runDir, 'recipe.yaml'), recipeYaml);
  return run;
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
