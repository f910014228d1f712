/**
 * Checkpoints: everything a run needs to continue exactly where it stopped.
 *
 * ```
 * <output_dir>/checkpoints/step-000120/
 *   adapter/adapter_model.safetensors, adapter_config.json   LoRA in PEFT format (loads with PEFT)
 *   adapter/projector.safetensors, projector_config.json     the video projector
 *   trainable.safetensors     every trained parameter, float32, by rpv name (exact resume)
 *   optimizer.safetensors     AdamW moments `<name>.exp_avg`, `<name>.exp_avg_sq`; steps in metadata
 *   trainer_state.json        step, loader state, RNG state, counters
 *   recipe.yaml               the resolved recipe
 * <output_dir>/checkpoints/latest   name of the newest complete checkpoint
 * ```
 *
 * Written atomically: everything goes to a hidden temporary folder beside the final one, each
 * file fsynced, then one rename publishes it and `latest` is rewritten (temp file + rename). A
 * kill at any moment leaves either the previous checkpoint or the new one, never a half one.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../util/safetensors.js';
import type { AdamWState } from './adamw.js';
import type { RngState } from '../util/random.js';

/** Progress and positions saved in `trainer_state.json`. */
export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Epoch of the training split the loader is in. */
  epoch: number;
  /** The loader's `state()` at the end of the step (null: start of `epoch`). */
  loader: unknown;
  rng: RngState;
  /** Samples skipped so far, by reason. */
  skipped: Record<string, number>;
  /** Trained tokens so far. */
  tokens: number;
  /** Id of the encoder that made the run's features (index.json `encoder.id`); absent in older runs. */
  encoder?: string;
  /** Anything else the trainer keeps (e.g. last eval). */
  [key: string]: unknown;
}

export interface CheckpointContents {
  /** Trained parameters by name, float32. */
  trainable: Map<string, { shape: number[]; data: Float32Array }>;
  optimizer: AdamWState;
  state: TrainerState;
  recipeYaml: string;
}

export interface WriteCheckpointOptions extends CheckpointContents {
  /** Writes the PEFT adapter and projector files into the folder it is given. */
  exportAdapter?: (dir: string) => Promise<void>;
  /** Checkpoints to keep (older ones removed after the new one is published). */
  keepLast?: number;
}

export const checkpointName = (step: number) => `step-${String(step).padStart(6, '0')}`;

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r').catch(() => null);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await handle.close();
  }
}

/** Write a checkpoint of `step` under `<runDir>/checkpoints/`; returns its folder. */
export async function writeCheckpoint(runDir: string, opts: WriteCheckpointOptions): Promise<string> {
  const root = path.join(runDir, 'checkpoints');
  await fs.mkdir(root, { recursive: true });
  const name = checkpointName(opts.state.step);
  const final = path.join(root, name);
  const tmp = path.join(root, `.${name}.${process.pid}.tmp`);
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp, { recursive: true });

  const trainable: Record<string, SafetensorsInput> = {};
  for (const [k, t] of opts.trainable) trainable[k] = { shape: t.shape, data: t.data, dtype: 'F32' };
  await writeSafetensors(path.join(tmp, 'trainable.safetensors'), trainable, { metadata: { format: 'rpv-trainable' } });

  const moments: Record<string, SafetensorsInput> = {};
  const steps: Record<string, number> = {};
  for (const p of opts.optimizer.params) {
    const shape = opts.trainable.get(p.name)?.shape ?? [p.m.length];
    moments[`${p.name}.exp_avg`] = { shape, data: p.m, dtype: 'F32' };
    moments[`${p.name}.exp_avg_sq`] = { shape, data: p.v, dtype: 'F32' };
    steps[p.name] = p.step;
  }
  await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), moments, {
    metadata: { format: 'rpv-adamw', order: JSON.stringify(opts.optimizer.params.map((p) => p.name)), steps: JSON.stringify(steps) },
  });
  await writeFileAtomic(path.join(tmp, 'trainer_state.json'), `${JSON.stringify(opts.state, null, 2)}\n`);
  await writeFileAtomic(path.join(tmp, 'recipe.yaml'), opts.recipeYaml);
  if (opts.exportAdapter) await opts.exportAdapter(path.join(tmp, 'adapter'));
  await fsyncDir(tmp);

  // Publish: a checkpoint of the same step (a rerun) is replaced.
  await fs.rm(final, { recursive: true, force: true });
  await fs.rename(tmp, final);
  await fsyncDir(root);
  await writeFileAtomic(path.join(root, 'latest'), `${name}\n`);

  if (opts.keepLast !== undefined) await pruneCheckpoints(root, opts.keepLast, name);
  return final;
}

/** Complete checkpoints under `<runDir>/checkpoints`, oldest first. */
export async function listCheckpoints(runDir: string): Promise<string[]> {
  const root = path.join(runDir, 'checkpoints');
  const names = await fs.readdir(root).catch(() => [] as string[]);
  return names.filter((n) => /^step-\d+$/.test(n)).sort().map((n) => path.join(root, n));
}

async function pruneCheckpoints(root: string, keepLast: number, newest: string): Promise<void> {
  const names = (await fs.readdir(root)).filter((n) => /^step-\d+$/.test(n)).sort();
  const drop = names.slice(0, Math.max(0, names.length - keepLast)).filter((n) => n !== newest);
  for (const n of drop) await fs.rm(path.join(root, n), { recursive: true, force: true });
  // Leftovers of writers killed mid-checkpoint.
  for (const n of await fs.readdir(root)) {
    if (n.startsWith('.step-') && n.endsWith('.tmp')) await fs.rm(path.join(root, n), { recursive: true, force: true });
  }
}

/**
 * Resolve what `resume=` names: a checkpoint folder, or a run folder (its newest checkpoint).
 */
export async function resolveCheckpoint(where: string): Promise<string> {
  const stat = await fs.stat(where).catch(() => null);
  if (!stat?.isDirectory()) throw new RpvError(`train: resume=${where}: not a checkpoint or run folder`);
  if (await fs.stat(path.join(where, 'trainer_state.json')).catch(() => null)) return where;
  const latest = await fs.readFile(path.join(where, 'checkpoints', 'latest'), 'utf8').catch(() => null);
  if (latest) {
    const dir = path.join(where, 'checkpoints', latest.trim());
    if (await fs.stat(path.join(dir, 'trainer_state.json')).catch(() => null)) return dir;
  }
  const all = await listCheckpoints(where);
  if (all.length > 0) return all[all.length - 1]!;
  throw new RpvError(`train: resume=${where}: no checkpoint found (expected trainer_state.json or checkpoints/step-*)`);
}

/** Read a checkpoint folder back. */
export async function readCheckpoint(dir: string): Promise<CheckpointContents> {
  const where = (f: string) => path.join(dir, f);
  let state: TrainerState;
  try {
    state = JSON.parse(await fs.readFile(where('trainer_state.json'), 'utf8')) as TrainerState;
  } catch (err) {
    throw new RpvError(`train: checkpoint ${dir}: cannot read trainer_state.json: ${(err as Error).message}`);
  }
  const trainableFile = await readSafetensors(where('trainable.safetensors'), where('trainable.safetensors'));
  const trainable = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, t] of trainableFile.tensors) trainable.set(k, { shape: t.shape, data: t.data as Float32Array });
  const opt = await readSafetensors(where('optimizer.safetensors'), where('optimizer.safetensors'));
  const order = JSON.parse(opt.metadata.order ?? '[]') as string[];
  const steps = JSON.parse(opt.metadata.steps ?? '{}') as Record<string, number>;
  const params = order.map((name) => {
    const m = opt.tensors.get(`${name}.exp_avg`);
    const v = opt.tensors.get(`${name}.exp_avg_sq`);
    if (!m || !v) throw new RpvError(`train: checkpoint ${dir}: optimizer.safetensors lacks the moments of ${name}`);
    return { name, step: steps[name] ?? 0, m: m.data as Float32Array, v: v.data as Float32Array };
  });
  const recipeYaml = await fs.readFile(where('recipe.yaml'), 'utf8');
  return { trainable, optimizer: { params }, state, recipeYaml };
}
