/**
 * Data-parallel training on this machine: `rpv train` with 2 ranks x 1 kernel thread against
 * 1 rank x 2 threads, the same global batch (4 micro-batches of 4 samples per step), for the tiny
 * and small shapes of bench/train-step.ts (LoRA r8 on q, k, v, o), on the training tests' fixture
 * dataset (48 videos x 3 dialogues; about 60 tokens a sample). Prints one JSON line per run: median
 * seconds per optimizer step over steps 2..N, the all-reduce's median seconds and share of the
 * step, bytes reduced per step, and the 1-minute load average before the run.
 *
 *   npx tsx bench/train-dp.ts [steps=8] [shape,...]   # shapes: tiny, small (default), qwen0.5b
 *
 * qwen0.5b: Qwen2.5-0.5B's shapes (random BF16 weights, mapped), LoRA r16 on all 7 modules, batch 1
 * (4 samples a step).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTinyModel } from '../src/model/tiny.js';
import { recipeText, writeDataset } from '../test/train/helpers.js';

const steps = Number(process.argv[2] ?? 8);
const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-bench-dp-'));
const cli = path.resolve(import.meta.dirname, '../src/cli.ts');
const shards = await writeDataset(path.join(root, 'shards'), { videos: 48 });
const ALL = [
  { name: 'tiny', model: { hiddenSize: 256, numLayers: 4, numHeads: 4, numKvHeads: 2 }, lora: 'r: 8, alpha: 16, dropout: 0.1, target_modules: [q, k, v, o]', batch: 4 },
  { name: 'small', model: { hiddenSize: 512, numLayers: 4, numHeads: 8, numKvHeads: 4 }, lora: 'r: 8, alpha: 16, dropout: 0.1, target_modules: [q, k, v, o]', batch: 4 },
  { name: 'qwen0.5b', model: { preset: 'qwen2.5-0.5b' as const }, lora: 'r: 16, alpha: 32, dropout: 0.1, target_modules: [q, k, v, o, gate, up, down]', batch: 1 },
];
const wanted = (process.argv[3] ?? 'tiny,small').split(',');
const SHAPES = ALL.filter((s) => wanted.includes(s.name));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

for (const shape of SHAPES) {
  const model = path.join(root, shape.name);
  await writeTinyModel(model, { ...shape.model, seed: 11 });
  for (const [ranks, threads] of [[1, 2], [2, 1]] as const) {
    const out = path.join(root, `${shape.name}-${ranks}x${threads}`);
    const recipe = path.join(root, `${shape.name}.yaml`);
    await fs.writeFile(recipe, recipeText(out, shards, model, 'scheduler: {type: constant, warmup_steps: 1}\n').replace('r: 4, alpha: 8, dropout: 0.1, target_modules: [q, v]', shape.lora).replace('batch_size: 4', `batch_size: ${shape.batch}`));
    const load = os.loadavg()[0]!;
    const args = ['--import', 'tsx', cli, 'train', recipe, `train.max_steps=${steps}`, `train.grad_accum_steps=${4 / ranks}`, 'train.log_every_steps=1', 'eval.every_steps=0', 'checkpoint.every_steps=0', `data.heldout_fraction=0`, '--no-progress', ...(ranks > 1 ? ['--nproc', String(ranks)] : [])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, RPV_MATMUL_THREADS: String(threads) } });
    if (r.status !== 0) throw new Error(`${shape.name} ${ranks}x${threads}: exit ${r.status}\n${r.stderr}`);
    const m = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((x) => x.type === 'train').slice(1);
    const stepSec = median(m.map((x) => x.step_sec));
    const reduceSec = ranks > 1 ? median(m.map((x) => x.allreduce_sec)) : 0;
    process.stdout.write(`${JSON.stringify({ bench: 'train-dp', shape: shape.name, ranks, threads, steps: m.length, step_sec: +stepSec.toFixed(4), allreduce_sec: +reduceSec.toFixed(4), allreduce_share: +(reduceSec / stepSec).toFixed(3), allreduce_bytes: ranks > 1 ? m[0].allreduce_bytes : 0, tokens_per_step: median(m.map((x) => x.tokens)), load1: +load.toFixed(2) })}\n`);
  }
}
