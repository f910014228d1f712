/**
 * Checkpoints: everything a run needs to continue exactly where it stopped.
 *
 * ```
 * <output_dir>/checkpoints/step-000120/
 *   adapter/adapter_model.safetensors, adapter_config.json   LoRA in PEFT format (loads with PEFT)
 *   adapter/projector.safetensors, projector_config.json     the video projector
 *   trainable.safetensors     every trained parameter, float32, by rpv name (exact resume)
 *   optimizer.safetensors     AdamW moments `<name>.exp_avg`, `<name>.exp_avg_sq`; steps in metadata
 *   trainer_state.json        step, loader state, RNG state, counters, the base model's identity
 *   recipe.yaml               the resolved recipe
 *   manifest.json             size and sha256 of every other file (written last)
 * <output_dir>/checkpoints/latest   name of the newest complete checkpoint
 * ```
 *
 * Written atomically: everything goes to a hidden temporary folder beside the final one, each
 * file fsynced, then one rename publishes it and `latest` is rewritten (temp file + rename). A
 * kill at any moment leaves either the previous checkpoint or the new one, never a half one. A
 * failed write (a full disk) removes the temporary folder and names the file and step.
 *
 * Resume checks every file against the manifest: a checkpoint whose bytes changed or were cut is
 * skipped, saying why, for the newest intact one (`openCheckpointForResume`).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage, RpvError } from '../util/errors.js';
import { releaseTemp, trackTemp, writeFileAtomic } from '../util/atomic.js';
import { assertFiniteToWrite } from '../util/finite.js';
import { sha256OfFile } from '../shard/cache.js';
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

/** Lists every file of a checkpoint with its size and sha256, so resume can tell a damaged one. */
export const MANIFEST_FILE = 'manifest.json';

interface Manifest {
  format: 'rpv-checkpoint';
  step: number;
  /** Path relative to the checkpoint folder (`/` separated) -> size and sha256 (hex). */
  files: Record<string, { bytes: number; sha256: string }>;
}

async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await filesUnder(path.join(dir, entry.name), rel)));
    else if (entry.isFile()) out.push(rel);
  }
  return out;
}

/** Hashes what is on disk (read back), so the manifest vouches for the bytes a resume will read. */
async function writeManifest(dir: string, step: number): Promise<void> {
  const files: Manifest['files'] = {};
  for (const rel of await filesUnder(dir)) {
    if (rel === MANIFEST_FILE) continue;
    const file = path.join(dir, rel);
    files[rel] = { bytes: (await fs.stat(file)).size, sha256: await sha256OfFile(file) };
  }
  const manifest: Manifest = { format: 'rpv-checkpoint', step, files };
  await writeFileAtomic(path.join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
}

/**
 * Why the checkpoint `dir` cannot be trusted, or null when every file matches its manifest.
 * `unverified`: a checkpoint of an older rpv, without a manifest.
 */
export async function checkCheckpointFiles(dir: string): Promise<{ problem: string | null; unverified: boolean }> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, MANIFEST_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { problem: null, unverified: true };
    return { problem: `${MANIFEST_FILE}: cannot read: ${errorMessage(err)}`, unverified: false };
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch {
    return { problem: `${MANIFEST_FILE}: not valid JSON (truncated?)`, unverified: false };
  }
  if (manifest?.format !== 'rpv-checkpoint' || typeof manifest.files !== 'object' || manifest.files === null) {
    return { problem: `${MANIFEST_FILE}: not an rpv checkpoint manifest`, unverified: false };
  }
  for (const [rel, want] of Object.entries(manifest.files)) {
    const file = path.join(dir, ...rel.split('/'));
    const stat = await fs.stat(file).catch(() => null);
    if (!stat?.isFile()) return { problem: `${rel}: missing`, unverified: false };
    if (stat.size !== want.bytes) return { problem: `${rel}: ${stat.size} bytes, ${want.bytes} when written (truncated or changed)`, unverified: false };
    const sha = await sha256OfFile(file);
    if (sha !== want.sha256) return { problem: `${rel}: sha256 ${sha.slice(0, 12)}… differs from ${want.sha256.slice(0, 12)}… when written (the file changed)`, unverified: false };
  }
  return { problem: null, unverified: false };
}

/** Runs `write`; a failure becomes one error naming the checkpoint file that could not be written. */
async function writing<T>(file: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { checkpointFile: file });
  }
}

/**
 * Write a checkpoint of `step` under `<runDir>/checkpoints/`; returns its folder. A failure (a full
 * disk, a permission) removes the temporary folder and throws one line naming the file, the step
 * and the checkpoint the folder still resumes from.
 */
export async function writeCheckpoint(runDir: string, opts: WriteCheckpointOptions): Promise<string> {
  const root = path.join(runDir, 'checkpoints');
  const name = checkpointName(opts.state.step);
  const final = path.join(root, name);
  // Nothing non-finite is written: a NaN checkpoint resumes, generates and merges into NaN.
  assertFiniteToWrite(final, [...opts.trainable, ...opts.optimizer.params.flatMap((p) => [[`${p.name}.exp_avg`, { data: p.m }], [`${p.name}.exp_avg_sq`, { data: p.v }]] as const)]);
  const tmp = path.join(root, `.${name}.${process.pid}.tmp`);
  const at = (f: string) => path.join(tmp, f);
  trackTemp(tmp);
  try {
    await fs.mkdir(root, { recursive: true });
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.mkdir(tmp, { recursive: true });

    const trainable: Record<string, SafetensorsInput> = {};
    for (const [k, t] of opts.trainable) trainable[k] = { shape: t.shape, data: t.data, dtype: 'F32' };
    await writing(at('trainable.safetensors'), () => writeSafetensors(at('trainable.safetensors'), trainable, { metadata: { format: 'rpv-trainable' } }));

    const moments: Record<string, SafetensorsInput> = {};
    const steps: Record<string, number> = {};
    for (const p of opts.optimizer.params) {
      const shape = opts.trainable.get(p.name)?.shape ?? [p.m.length];
      moments[`${p.name}.exp_avg`] = { shape, data: p.m, dtype: 'F32' };
      moments[`${p.name}.exp_avg_sq`] = { shape, data: p.v, dtype: 'F32' };
      steps[p.name] = p.step;
    }
    await writing(at('optimizer.safetensors'), () =>
      writeSafetensors(at('optimizer.safetensors'), moments, {
        metadata: { format: 'rpv-adamw', order: JSON.stringify(opts.optimizer.params.map((p) => p.name)), steps: JSON.stringify(steps) },
      }),
    );
    await writing(at('trainer_state.json'), () => writeFileAtomic(at('trainer_state.json'), `${JSON.stringify(opts.state, null, 2)}\n`));
    await writing(at('recipe.yaml'), () => writeFileAtomic(at('recipe.yaml'), opts.recipeYaml));
    if (opts.exportAdapter) await writing(at('adapter'), () => opts.exportAdapter!(at('adapter')));
    await writing(at(MANIFEST_FILE), () => writeManifest(tmp, opts.state.step));
    await fsyncDir(tmp);

    // Publish: a checkpoint of the same step (a rerun) is replaced.
    await writing(final, async () => {
      await fs.rm(final, { recursive: true, force: true });
      await fs.rename(tmp, final);
    });
    await fsyncDir(root);
    await writing(path.join(root, 'latest'), () => writeFileAtomic(path.join(root, 'latest'), `${name}\n`));
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
    const file = (err as { targetFile?: string }).targetFile ?? (err as { checkpointFile?: string }).checkpointFile ?? root;
    // Name the file where it would have landed, not inside the temporary folder.
    const shown = file.startsWith(tmp) ? path.join(final, path.relative(tmp, file)) : file;
    const kept = await listCheckpoints(runDir);
    const previous = kept.length > 0 ? path.basename(kept[kept.length - 1]!) : null;
    throw new RpvError(
      `train: step ${opts.state.step}: cannot write ${shown}: ${errorMessage(err)}; the partial checkpoint was removed` +
        (previous ? ` and ${runDir} resumes from ${previous} (make room, then run again with resume=${runDir})` : `; ${runDir} has no checkpoint yet (make room, then start again with overwrite_output_dir=true)`),
      { cause: err },
    );
  } finally {
    releaseTemp(tmp);
  }

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

/** Verify the checkpoint `dir` against its manifest and read it; throws the reason it cannot be used. */
async function openCheckpoint(dir: string): Promise<{ contents: CheckpointContents; unverified: boolean }> {
  const { problem, unverified } = await checkCheckpointFiles(dir);
  if (problem) throw new RpvError(problem);
  try {
    return { contents: await readCheckpoint(dir), unverified };
  } catch (err) {
    // Without a manifest, a file that does not parse is the only sign of damage.
    throw new RpvError(errorMessage(err).replace(`train: checkpoint ${dir}: `, ''), { cause: err });
  }
}

/**
 * Open what `resume=` names. A checkpoint folder is used as it is, or refused with the reason it
 * is damaged. A run folder gives its newest intact checkpoint: each newer one that is damaged
 * (a file cut short or changed since it was written) is skipped, and `log` says which and why.
 */
export async function openCheckpointForResume(where: string, log: (line: string) => void): Promise<{ dir: string; contents: CheckpointContents }> {
  const stat = await fs.stat(where).catch(() => null);
  if (!stat?.isDirectory()) throw new RpvError(`train: resume=${where}: not a checkpoint or run folder`);
  const isCheckpoint = async (dir: string) => Boolean((await fs.stat(path.join(dir, 'trainer_state.json')).catch(() => null)) ?? (await fs.stat(path.join(dir, MANIFEST_FILE)).catch(() => null)));
  if (await isCheckpoint(where)) {
    try {
      const { contents, unverified } = await openCheckpoint(where);
      if (unverified) log(`train: ${where} has no ${MANIFEST_FILE} (written by an older rpv): its files are not verified`);
      return { dir: where, contents };
    } catch (err) {
      throw new RpvError(`train: resume=${where}: the checkpoint is damaged: ${errorMessage(err)}; name an intact checkpoint, or the run folder to resume from its newest intact one`);
    }
  }
  const all = (await listCheckpoints(where)).reverse();
  if (all.length === 0) throw new RpvError(`train: resume=${where}: no checkpoint found (expected trainer_state.json or checkpoints/step-*)`);
  const skipped: string[] = [];
  for (const dir of all) {
    try {
      const { contents, unverified } = await openCheckpoint(dir);
      if (unverified) log(`train: ${dir} has no ${MANIFEST_FILE} (written by an older rpv): its files are not verified`);
      if (skipped.length > 0) log(`train: resume: using ${dir}, the newest intact checkpoint`);
      return { dir, contents };
    } catch (err) {
      log(`train: resume: skipped ${dir}: ${errorMessage(err)}`);
      skipped.push(`${path.basename(dir)} (${errorMessage(err)})`);
    }
  }
  throw new RpvError(`train: resume=${where}: no intact checkpoint: ${skipped.join('; ')}`);
}

/** The checkpoint folder `resume=` (or `rpv generate <run>`) would use: see openCheckpointForResume. */
export async function resolveCheckpoint(where: string, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string> {
  return (await openCheckpointForResume(where, log)).dir;
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
  const recipeYaml = await fs.readFile(where('recipe.yaml'), 'utf8').catch((err: Error) => {
    throw new RpvError(`train: checkpoint ${dir}: cannot read recipe.yaml: ${err.message}`);
  });
  return { trainable, optimizer: { params }, state, recipeYaml };
}
