// Resume trusts no checkpoint blindly: each file is checked against the sha256 its manifest
// recorded, a damaged latest checkpoint gives way to the newest intact one (saying which and why),
// and a run is only continued on the base model and LoRA settings it was trained with.
import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRecipe, train } from '../../src/index.js';
import { modelIdentity } from '../../src/model/identity.js';
import { writeTinyModel } from '../../src/model/tiny.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-ckpt-integrity-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const otherModel = path.join(root, 'other-model');
const base = path.join(root, 'base');
const common = ['train.max_steps=4', 'checkpoint.every_steps=2', 'checkpoint.keep_last=3', 'eval.every_steps=0'];
const recipeFor = (out: string, overrides: string[] = [], modelDir = model) => parseRecipe(recipeText(out, shards, modelDir), [...common, ...overrides], 'test.yaml');

let reference: number[] = [];

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
  // Same shapes, other weights: only the values tell it from `model`.
  await writeTinyModel(otherModel, { hiddenSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, vocabSize: 320, seed: 4 });
  reference = (await train(recipeFor(base), { progressStream: null, log: () => {} })).losses;
});

/** A copy of the reference run in its own folder (checkpoints step-000002 and step-000004). */
async function copyOfBase(name: string): Promise<string> {
  const dir = path.join(root, name);
  await fs.cp(base, dir, { recursive: true });
  return dir;
}

const sha256 = async (file: string) => createHash('sha256').update(await fs.readFile(file)).digest('hex');

async function resume(dir: string, overrides: string[] = [], modelDir = model): Promise<{ losses: number[]; log: string[] }> {
  const log: string[] = [];
  const result = await train(recipeFor(dir, [`resume=${dir}`, ...overrides], modelDir), { progressStream: null, log: (l) => log.push(l) });
  return { losses: result.losses, log };
}

describe('checkpoint checksums', () => {
  it('every file of a checkpoint is listed in its manifest with its size and sha256', async () => {
    const dir = path.join(base, 'checkpoints', 'step-000004');
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, { bytes: number; sha256: string }> };
    expect(Object.keys(manifest.files).sort()).toEqual([
      'adapter/adapter_config.json',
      'adapter/adapter_model.safetensors',
      'adapter/projector.safetensors',
      'adapter/projector_config.json',
      'optimizer.safetensors',
      'recipe.yaml',
      'trainable.safetensors',
      'trainer_state.json',
    ]);
    const file = path.join(dir, 'trainable.safetensors');
    expect(manifest.files['trainable.safetensors']).toEqual({ bytes: (await fs.stat(file)).size, sha256: await sha256(file) });
  });

  it('64 bytes flipped in the latest trainable.safetensors: resume skips it, says why, and continues from the checkpoint before', async () => {
    const dir = await copyOfBase('flipped');
    const file = path.join(dir, 'checkpoints', 'step-000004', 'trainable.safetensors');
    const written = await sha256(file);
    const bytes = await fs.readFile(file);
    const at = bytes.length - 200;
    for (let i = at; i < at + 64; i++) bytes[i] = bytes[i]! ^ 0xff;
    await fs.writeFile(file, bytes);
    const now = await sha256(file);
    const { losses, log } = await resume(dir);
    const ckpt = (step: number) => path.join(dir, 'checkpoints', `step-00000${step}`);
    expect(log.slice(0, 4)).toEqual([
      `train: resume: skipped ${ckpt(4)}: trainable.safetensors: sha256 ${now.slice(0, 12)}… differs from ${written.slice(0, 12)}… when written (the file changed)`,
      `train: resume: using ${ckpt(2)}, the newest intact checkpoint`,
      'train: removed step-000004: the run continues from step 2, these hold steps it will redo',
      `train: resumed from ${ckpt(2)} at step 2`,
    ]);
    expect(losses).toEqual(reference.slice(2));
  });

  it('a truncated latest optimizer.safetensors: resume names the size and falls back', async () => {
    const dir = await copyOfBase('truncated');
    const file = path.join(dir, 'checkpoints', 'step-000004', 'optimizer.safetensors');
    const { size } = await fs.stat(file);
    await fs.truncate(file, 1000);
    const { losses, log } = await resume(dir);
    expect(log[0]).toBe(`train: resume: skipped ${path.join(dir, 'checkpoints', 'step-000004')}: optimizer.safetensors: 1000 bytes, ${size} when written (truncated or changed)`);
    expect(log[1]).toBe(`train: resume: using ${path.join(dir, 'checkpoints', 'step-000002')}, the newest intact checkpoint`);
    expect(losses).toEqual(reference.slice(2));
  });

  it('a damaged checkpoint named by resume= is refused, not replaced', async () => {
    const dir = await copyOfBase('named');
    const ckpt = path.join(dir, 'checkpoints', 'step-000004');
    await fs.rm(path.join(ckpt, 'adapter', 'projector.safetensors'));
    const recipe = recipeFor(dir, [`resume=${ckpt}`]);
    await expect(train(recipe, { progressStream: null, log: () => {} })).rejects.toThrow(
      `train: resume=${ckpt}: the checkpoint is damaged: adapter/projector.safetensors: missing; name an intact checkpoint, or the run folder to resume from its newest intact one`,
    );
  });
});

describe('resume keeps the run it continues', () => {
  it('refuses a base model of the same shapes but other weights', async () => {
    const dir = await copyOfBase('other-base');
    const [ours, theirs] = [await modelIdentity(model), await modelIdentity(otherModel)];
    expect(theirs.files).toEqual(ours.files); // same files, same sizes
    await expect(resume(dir, [], otherModel)).rejects.toThrow(
      `train: resume=${dir}: model.path ${otherModel} is not the base model the run was trained on (${model}): its weights' identity is ${theirs.sha256.slice(0, 12)}…, the run's ${ours.sha256.slice(0, 12)}…; resume with the run's base model, or start a new run`,
    );
  });

  it('refuses a changed lora.alpha, naming the key and both values', async () => {
    const dir = await copyOfBase('alpha');
    await expect(resume(dir, ['lora.alpha=16'])).rejects.toThrow(
      `train: resume=${dir}: lora.alpha: the run was trained with 8, this recipe has 16; a resumed run keeps these (set them back, or start a new run in another output_dir)`,
    );
  });

  it('a rank mismatch names lora.r; several changes are listed together', async () => {
    const dir = await copyOfBase('rank');
    await expect(resume(dir, ['lora.r=8'])).rejects.toThrow(
      `train: resume=${dir}: lora.r: the run was trained with 4, this recipe has 8; a resumed run keeps these (set them back, or start a new run in another output_dir)`,
    );
    await expect(resume(dir, ['lora.dropout=0', 'lora.target_modules=[q,k,v]'])).rejects.toThrow(
      `train: resume=${dir}: lora.dropout: the run was trained with 0.1, this recipe has 0; lora.target_modules: the run was trained with [q, v], this recipe has [q, k, v]; a resumed run keeps these (set them back, or start a new run in another output_dir)`,
    );
  });
});
