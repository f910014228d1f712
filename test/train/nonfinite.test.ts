// Non-finite training: a step whose loss or gradient norm is NaN or infinite is never applied;
// train.on_nonfinite stop (default) ends the run there, skip goes on and stops after
// NONFINITE_STEPS_IN_ROW such steps in a row; the error names the step and the last good
// checkpoint; no checkpoint with a non-finite value is written. A learning rate of 1e30 makes
// the weights after step 1 huge but finite, so step 2's forward pass overflows to NaN.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadForGeneration, parseRecipe, readCheckpoint, readMetrics, train, type TrainMetric } from '../../src/index.js';
import { writeCheckpoint } from '../../src/train/checkpoint.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../../src/util/safetensors.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-nonfinite-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const quiet = { progressStream: null, log: () => {} };
const diverging = ['optimizer.lr=1e30', 'scheduler.warmup_steps=0', 'train.projector_warmup_steps=0'];
const recipeFor = (out: string, overrides: string[]) => parseRecipe(recipeText(path.join(root, out), shards, model), [...diverging, ...overrides], 'test.yaml');

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
});

const trainLines = async (run: string) => (await readMetrics(path.join(root, run, 'metrics.jsonl'))).filter((m): m is TrainMetric => m.type === 'train');

describe('non-finite loss or gradient norm', () => {
  it('train.on_nonfinite: stop (the default) stops at that step, naming it and the last good checkpoint', async () => {
    await expect(train(recipeFor('stop', ['checkpoint.every_steps=1']), quiet)).rejects.toThrow(
      `train: step 2: non-finite loss NaN (grad_norm NaN): update not applied, run stopped (train.on_nonfinite=stop); last good checkpoint ${path.join(root, 'stop', 'checkpoints', 'step-000001')}`,
    );
    expect((await fs.readdir(path.join(root, 'stop', 'checkpoints'))).sort()).toEqual(['latest', 'step-000001']);
    expect(existsSync(path.join(root, 'stop', 'adapter'))).toBe(false);
    const lines = await trainLines('stop');
    expect(lines.map((m) => [m.step, m.loss === null, m.update_skipped ?? false])).toEqual([
      [1, false, false],
      [2, true, true],
    ]);
  });

  it('the CLI prints the one-line error, says no checkpoint was written, and exits 1', async () => {
    const file = path.join(root, 'cli.yaml');
    await fs.writeFile(file, recipeText(path.join(root, 'cli'), shards, model));
    const args = ['--import', 'tsx', path.resolve('src/cli.ts'), 'train', file, ...diverging, 'checkpoint.every_steps=0', 'eval.every_steps=0', '--no-progress'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, err).toBe(1);
    expect(out).toBe('');
    expect(err.trimEnd().split('\n').at(-1)).toBe('rpv: train: step 2: non-finite loss NaN (grad_norm NaN): update not applied, run stopped (train.on_nonfinite=stop); no checkpoint was written');
    expect(existsSync(path.join(root, 'cli', 'checkpoints'))).toBe(false);
  });

  it('train.on_nonfinite: skip does not apply the update, counts it in metrics, and stops after 3 in a row', async () => {
    await expect(train(recipeFor('skip', ['train.on_nonfinite=skip', 'checkpoint.every_steps=1', 'checkpoint.keep_last=5']), quiet)).rejects.toThrow(
      `train: step 4: non-finite loss NaN (grad_norm NaN) for 3 steps in a row: updates not applied, run stopped (train.on_nonfinite=skip); last good checkpoint ${path.join(root, 'skip', 'checkpoints', 'step-000003')}`,
    );
    const lines = await trainLines('skip');
    expect(lines.map((m) => [m.step, m.update_skipped ?? false])).toEqual([
      [1, false],
      [2, true],
      [3, true],
      [4, true],
    ]);
    // The skipped steps left every trained value as step 1 made it.
    const one = await readCheckpoint(path.join(root, 'skip', 'checkpoints', 'step-000001'));
    const three = await readCheckpoint(path.join(root, 'skip', 'checkpoints', 'step-000003'));
    expect([...three.trainable.keys()]).toEqual([...one.trainable.keys()]);
    for (const [name, t] of one.trainable) expect(three.trainable.get(name)!.data, name).toEqual(t.data);
  });

  it('writes no checkpoint holding a non-finite value, naming the tensor', async () => {
    const runDir = path.join(root, 'nan-checkpoint');
    const ckpt = await readCheckpoint(path.join(root, 'stop', 'checkpoints', 'step-000001'));
    const trainable = new Map([...ckpt.trainable].map(([k, t]) => [k, { shape: t.shape, data: t.data.slice() }]));
    trainable.get('projector.0.bias')!.data[3] = NaN;
    const final = path.join(runDir, 'checkpoints', 'step-000005');
    await expect(writeCheckpoint(runDir, { ...ckpt, trainable, state: { ...ckpt.state, step: 5 } })).rejects.toThrow(
      `${final}: not written: tensor projector.0.bias: value 3 of 32 is NaN (a non-finite value would make every output NaN)`,
    );
    expect(await fs.readdir(path.join(runDir, 'checkpoints')).catch(() => [])).toEqual([]);
  });

  it('rpv generate refuses a checkpoint whose trained values hold NaN', async () => {
    const dir = path.join(root, 'nan-generate');
    cpSync(path.join(root, 'stop', 'checkpoints', 'step-000001'), dir, { recursive: true });
    const file = path.join(dir, 'trainable.safetensors');
    const tensors = new Map<string, SafetensorsInput>();
    for (const [n, t] of (await readSafetensors(file)).tensors) tensors.set(n, { shape: t.shape, data: t.data });
    tensors.get('projector.2.bias')!.data[4] = NaN;
    await writeSafetensors(file, tensors);
    // A checkpoint of an rpv without manifests (the manifest would flag the changed bytes first):
    // the values themselves must still be checked.
    await fs.rm(path.join(dir, 'manifest.json'));
    await expect(loadForGeneration(dir)).rejects.toThrow(`${file}: tensor projector.2.bias: value 4 of 32 is NaN; non-finite weights are refused (they make every output NaN)`);
  });

  it('a base model with a NaN weight is refused before the first step, naming file and tensor', async () => {
    const bad = path.join(root, 'nan-model');
    cpSync(model, bad, { recursive: true });
    const file = path.join(bad, 'model.safetensors');
    const tensors = new Map<string, SafetensorsInput>();
    for (const [n, t] of (await readSafetensors(file)).tensors) tensors.set(n, { shape: t.shape, data: t.data });
    tensors.get('model.layers.0.self_attn.k_proj.weight')!.data[9] = NaN;
    await writeSafetensors(file, tensors);
    const recipe = parseRecipe(recipeText(path.join(root, 'nan-model-run'), shards, bad), [], 'test.yaml');
    await expect(train(recipe, quiet)).rejects.toThrow(`${file}: tensor model.layers.0.self_attn.k_proj.weight: value 9 of 512 is NaN; non-finite weights are refused (they make every output NaN)`);
    expect(existsSync(path.join(root, 'nan-model-run', 'checkpoints'))).toBe(false);
  });

  it('data.use_video=false with lora.target_modules=[] names the key instead of failing inside tfjs', async () => {
    const recipe = { output_dir: path.join(root, 'empty'), model: { path: model, backend: 'wasm' as const }, data: { shards, use_video: false }, lora: { target_modules: [] } };
    await expect(train(recipe, quiet)).rejects.toThrow(
      'train: 1 error:\n  lora.target_modules: expected at least one of q, k, v, o, gate, up, down, found an empty list (LoRA needs at least one module to adapt)',
    );
  });
});
