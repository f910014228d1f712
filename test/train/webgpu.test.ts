/**
 * `rpv train` on the webgpu backend against the same run on wasm: five steps of LoRA on every
 * linear + projector (dropout on, a projector-only first step, AdamW, clipping whose gradient-norm
 * AddN has 18 inputs) give the same losses and the same exported adapter; a checkpoint written on
 * webgpu resumes on wasm with the losses the webgpu run went on to have.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readMetrics, type TrainMetric } from '../../src/index.js';
import { readSafetensors } from '../../src/util/safetensors.js';
import { reportSkip, webgpuUnavailable } from '../model/webgpu-env.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const unavailable = await webgpuUnavailable();
reportSkip('test/train/webgpu.test.ts', unavailable);

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-webgpu-'));
const recipe = path.join(root, 'recipe.yaml');
const common = ['train.max_steps=5', 'data.batch_size=2', 'train.grad_accum_steps=1', 'lora.target_modules=[q,k,v,o,gate,up,down]', 'eval.every_steps=0', 'checkpoint.every_steps=3', 'checkpoint.keep_last=3', '--no-progress'];

function train(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli.ts'), 'train', recipe, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

async function losses(run: string): Promise<number[]> {
  return (await readMetrics(path.join(root, run, 'metrics.jsonl'))).filter((m): m is TrainMetric => m.type === 'train').map((m) => m.loss);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

beforeAll(async () => {
  if (unavailable) return;
  await writeDataset(path.join(root, 'shards'));
  await writeModel(path.join(root, 'model'));
  await fs.writeFile(recipe, recipeText(path.join(root, 'out'), path.join(root, 'shards'), path.join(root, 'model')));
});

describe.skipIf(unavailable !== null)('rpv train on webgpu', () => {
  it('five steps have the losses and the adapter of the wasm run; a webgpu checkpoint resumes on wasm', async () => {
    const [gpu, cpu] = await Promise.all([
      train([...common, 'model.backend=webgpu', `output_dir=${path.join(root, 'webgpu')}`]),
      train([...common, 'model.backend=wasm', `output_dir=${path.join(root, 'wasm')}`]),
    ]);
    expect(gpu.code, gpu.stderr).toBe(0);
    expect(cpu.code, cpu.stderr).toBe(0);
    expect(gpu.stderr).toContain('rpv: using the webgpu backend');
    const onGpu = await losses('webgpu');
    const onCpu = await losses('wasm');
    expect(onGpu).toHaveLength(5);
    // Measured on llvmpipe: 1.3e-6.
    expect(maxAbsDiff(onGpu, onCpu)).toBeLessThan(2e-3);
    for (const file of ['adapter_model.safetensors', 'projector.safetensors']) {
      const a = (await readSafetensors(path.join(root, 'webgpu', 'adapter', file))).tensors;
      const b = (await readSafetensors(path.join(root, 'wasm', 'adapter', file))).tensors;
      expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
      for (const [name, t] of a) expect(maxAbsDiff(t.data as Float32Array, b.get(name)!.data as Float32Array), `${file} ${name}`).toBeLessThan(1e-4);
    }
    const resumed = await train([...common, 'model.backend=wasm', `output_dir=${path.join(root, 'webgpu')}`, `resume=${path.join(root, 'webgpu', 'checkpoints', 'step-000003')}`]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const after = await losses('webgpu');
    expect(after).toHaveLength(5);
    expect(maxAbsDiff(after.slice(3), onGpu.slice(3))).toBeLessThan(2e-3);
  });
});
