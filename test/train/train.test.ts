import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { dryRun, generateReply, loadForGeneration, parseRecipe, readMetrics, train, type TrainMetric } from '../../src/index.js';
import { describeBackend } from '../../src/model/backend.js';
import { readShard } from '../../src/shard/read.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const recipeFor = (out: string, overrides: string[] = []) => parseRecipe(recipeText(path.join(root, out), shards, model), overrides, 'test.yaml');
const quiet = { progressStream: null, log: () => {} };

let straight: number[] = [];

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
  // The reference: 8 uninterrupted steps (dropout on, 2 micro-batches per step, stage change at step 1).
  const result = await train(recipeFor('straight', ['train.max_steps=8']), quiet);
  straight = result.losses;
});

describe('train', () => {
  it('starts at the loss of a near-uniform tiny model and lowers the held-out loss', async () => {
    expect(straight).toHaveLength(8);
    // A tiny model initialised with std 0.02 predicts nearly uniformly over its 320 tokens.
    expect(straight[0]).toBeCloseTo(Math.log(320), 1);
    const metrics = await readMetrics(path.join(root, 'straight', 'metrics.jsonl'));
    const evals = metrics.filter((m) => m.type === 'eval');
    expect(evals.map((m) => m.step)).toEqual([3, 6, 8]);
    expect(evals[2]!.loss).toBeLessThan(evals[0]!.loss);
    expect(evals[0]!.focus_tokens).toBeGreaterThan(0);
    expect(evals[0]!.perplexity).toBeCloseTo(Math.exp(evals[0]!.loss), 6);
  });

  it('logs every step with its loader wait time, learning rate and stage', async () => {
    const metrics = (await readMetrics(path.join(root, 'straight', 'metrics.jsonl'))).filter((m): m is TrainMetric => m.type === 'train');
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const m of metrics) {
      expect(m.loader_wait_sec).toBeGreaterThanOrEqual(0);
      expect(m.loader_wait_sec).toBeLessThan(m.step_sec + 1e-9);
      expect(m.tokens).toBeGreaterThan(0);
    }
    expect(metrics[0]!.stage).toBe('projector');
    expect(metrics[1]!.stage).toBe('lora');
    expect(metrics[0]!.lr).toBe(0); // warm-up starts at 0, as HF's schedule
    expect(metrics.map((m) => m.loss)).toEqual(straight);
  });

  it('resumes from a checkpoint with exactly the losses of the uninterrupted run', async () => {
    let steps = 0;
    const first = await train(recipeFor('resumed', ['train.max_steps=8']), { ...quiet, shouldStop: () => ++steps >= 4 });
    expect(first.stopped).toBe(true);
    expect(first.steps).toBe(4);
    expect(path.basename(first.checkpoint!)).toBe('step-000004');
    const second = await train(recipeFor('resumed', ['train.max_steps=8', `resume=${path.join(root, 'resumed')}`]), quiet);
    expect(second.steps).toBe(8);
    expect([...first.losses, ...second.losses]).toEqual(straight);
    const metrics = await readMetrics(path.join(root, 'resumed', 'metrics.jsonl'));
    expect(metrics.filter((m) => m.type === 'train').map((m) => m.loss)).toEqual(straight);
    // Checkpoints at 3, 4 (the interrupt), 6 and 8; keep_last 2 leaves 6 and 8.
    expect((await fs.readdir(path.join(root, 'resumed', 'checkpoints'))).sort()).toEqual(['latest', 'step-000006', 'step-000008']);
  });

  it('recovers from kill -9: the CLI resumes from the last checkpoint and reproduces the losses', async () => {
    const file = path.join(root, 'kill.yaml');
    await fs.writeFile(file, recipeText(path.join(root, 'killed'), shards, model, ''));
    const cli = path.resolve('src/cli.ts');
    const args = ['--import', 'tsx', cli, 'train', file, 'train.max_steps=8', 'checkpoint.every_steps=2', 'checkpoint.keep_last=4', '--no-progress'];
    const latest = path.join(root, 'killed', 'checkpoints', 'latest');
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let done = false;
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code, signal) => {
        done = true;
        resolve(signal ? -1 : code);
      }),
    );
    // Kill as soon as the first checkpoint is published (a later step may be mid-way).
    for (let i = 0; i < 1200 && !done && !existsSync(latest); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(latest), stderr).toBe(true);
    child.kill('SIGKILL');
    expect(await exited).toBe(-1);
    const killedAt = Number((await fs.readFile(latest, 'utf8')).trim().slice('step-'.length));
    expect(killedAt).toBeGreaterThanOrEqual(2);
    const resumed = spawn(process.execPath, [...args, `resume=${path.join(root, 'killed')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    resumed.stdout.on('data', (d) => (out += d));
    resumed.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => resumed.on('exit', resolve));
    expect(code, err).toBe(0);
    expect(out).toMatch(/^finished at step 8\/8; held-out loss \d+\.\d{4}/);
    expect(err).toContain(`train: resumed from ${path.join(root, 'killed', 'checkpoints', `step-${String(killedAt).padStart(6, '0')}`)} at step ${killedAt}`);
    const metrics = await readMetrics(path.join(root, 'killed', 'metrics.jsonl'));
    expect(metrics.filter((m) => m.type === 'train').map((m) => m.loss)).toEqual(straight);
  });

  it('Ctrl-C finishes the step, saves a checkpoint and exits 130', async () => {
    const file = path.join(root, 'sigint.yaml');
    await fs.writeFile(file, recipeText(path.join(root, 'sigint'), shards, model, ''));
    const args = ['--import', 'tsx', path.resolve('src/cli.ts'), 'train', file, 'train.max_steps=60', 'checkpoint.every_steps=0', 'eval.every_steps=0', '--no-progress'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    let code: number | null | undefined;
    child.on('exit', (c) => (code = c));
    const metricsFile = path.join(root, 'sigint', 'metrics.jsonl');
    const stepsLogged = async () => (existsSync(metricsFile) ? (await fs.readFile(metricsFile, 'utf8')).split('\n').filter(Boolean).length : 0);
    for (let i = 0; i < 1200 && code === undefined && (await stepsLogged()) < 2; i++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    for (let i = 0; i < 1200 && code === undefined; i++) await new Promise((r) => setTimeout(r, 50));
    expect(code, err).toBe(130);
    const m = /^stopped at step (\d+)\/60; checkpoint (.+)$/m.exec(out);
    expect(m, out + err).not.toBeNull();
    const step = Number(m![1]);
    expect(step).toBeGreaterThanOrEqual(2);
    expect(step).toBeLessThan(60);
    expect(path.basename(m![2]!)).toBe(`step-${String(step).padStart(6, '0')}`);
    expect(await stepsLogged()).toBe(step);
    expect(err).toContain('interrupt: finishing this step, saving a checkpoint, then exiting');
  });

  it('keeps tf.memory().numTensors flat over 100 steps', async () => {
    const counts: number[] = [];
    const r = recipeFor('memory', ['train.max_steps=100', 'train.grad_accum_steps=1', 'eval.every_steps=50', 'checkpoint.every_steps=50', 'data.batch_size=2']);
    const before = tf.memory().numTensors;
    const result = await train(r, { ...quiet, onStep: () => counts.push(tf.memory().numTensors) });
    expect(result.steps).toBe(100);
    expect(counts).toHaveLength(100);
    expect(new Set(counts.slice(1))).toEqual(new Set([counts[1]]));
    expect(counts[0]).toBe(counts[1]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('generates a reply from a run: greedy is deterministic, streamed pieces make the text, max tokens respected', async () => {
    const run = await loadForGeneration(path.join(root, 'straight'));
    try {
      const [row] = await readShard(path.join(shards, 'shard-00000.arrow'));
      const video = { features: row!.frames, frameTimes: row!.frame_times, tokensPerFrame: 1, featureDim: 8 };
      const pieces: string[] = [];
      const a = await generateReply({ model: run.model, role: row!.role, video, history: [{ role: 'user', content: 'What colour is it?' }], maxNewTokens: 6, onText: (t) => pieces.push(t) });
      const b = await generateReply({ model: run.model, role: row!.role, video, history: [{ role: 'user', content: 'What colour is it?' }], maxNewTokens: 6 });
      expect(a.tokenIds).toEqual(b.tokenIds);
      expect(a.tokenIds.length).toBeLessThanOrEqual(6);
      expect(pieces.join('')).toBe(a.text);
      expect(a.promptTokens).toBeGreaterThan(4);
      const sampled = await generateReply({ model: run.model, role: row!.role, video, history: [{ role: 'user', content: 'Hi' }], maxNewTokens: 6, temperature: 1, topP: 0.9, seed: 5 });
      const again = await generateReply({ model: run.model, role: row!.role, video, history: [{ role: 'user', content: 'Hi' }], maxNewTokens: 6, temperature: 1, topP: 0.9, seed: 5 });
      expect(sampled.tokenIds).toEqual(again.tokenIds);
    } finally {
      run.model.dispose();
    }
  });

  it('says when no dialogue is held out and evaluates nothing, rather than logging a NaN loss', async () => {
    const lines: string[] = [];
    const result = await train(recipeFor('no-heldout', ['data.heldout_fraction=0', 'train.max_steps=2']), { progressStream: null, log: (l) => lines.push(l) });
    expect(lines, lines.join('\n')).toContain('train: no held-out dialogues (data.heldout_fraction 0 of 12 videos selects none): no held-out evaluation');
    expect(lines.join('\n')).not.toMatch(/NaN|eval step/);
    expect(result.lastEval ?? null).toBeNull();
    const metrics = await readMetrics(path.join(root, 'no-heldout', 'metrics.jsonl'));
    expect(metrics.map((m) => m.type)).toEqual(['train', 'train']);
  });

  it('takes a partial recipe from a program, fills the defaults and validates it as YAML recipes are', async () => {
    const text = await dryRun({ output_dir: path.join(root, 'partial'), model: { path: model, backend: 'wasm' }, data: { shards, workers: 0 } });
    expect(text).toContain('# resolved recipe\noutput_dir: ');
    expect(text).toMatch(/\n {2}heldout_fraction: 0\.1\n/);
    await expect(train({ output_dir: path.join(root, 'partial'), model: { path: model }, data: { shards }, optimizer: { lr: -1 } }, quiet)).rejects.toThrow(
      'train: 1 error:\n  optimizer.lr: expected a number > 0, found number -1',
    );
    expect(existsSync(path.join(root, 'partial'))).toBe(false);
  });

  it('--dry-run shows the recipe, counts and one sample with its loss mask', async () => {
    const text = await dryRun(recipeFor('dry'));
    expect(text).toContain('# resolved recipe\noutput_dir: ');
    expect(text).toContain('videos: 9 train, 3 held out (0 text-only)\ndialogues: 27 train, 9 held out\n');
    expect(text).toContain('optimizer steps: 6 (warm-up 1, projector-only 1), grad accumulation 2');
    expect(text).toMatch(/lora: 448 values in 4 tensors \(4 with weight decay\)\nprojector: 1,344 values in 4 tensors \(2 with weight decay\)/);
    expect(text).toMatch(/\nFrame 1 at 0\.5s:\[video x1\]\nFrame 2 at 1\.5s:\[video x1\]/);
    expect(text).toMatch(/<\|im_start\|>assistant\n\[\[(It is|Yes,) (red|green|blue|yellow)[.!]<\|im_end\|>\]\]/);
    expect(text).toMatch(/\n# memory\nfrozen weights: .*\ntrainable state \(values, gradients, accumulated gradients, AdamW moments\): 0\.00 GiB\nactivations at the longest sample: [\d.]+ GiB \(gradient checkpointing off: auto: activations of every layer/);
    expect(text).toMatch(/\ntensors at peak: about [\d.]+ GiB of (4\.00 GiB \(the wasm backend's heap\)|[\d.]+ GiB)/);
    // The native kernels' scratch is host memory outside the tensors (when the addon runs them).
    if (describeBackend()?.nativeMatmul.active) expect(text).toMatch(/\nnative kernel scratch \(outside the tensors\): about [\d.]+ GiB\nprocess at peak/);
    expect(existsSync(path.join(root, 'dry'))).toBe(false);
  });
});
