// Data-parallel training on 2 ranks over loopback (Gloo): the same losses and adapter as one
// process with the same global batch, resume on another number of ranks, a wrong MASTER_PORT and a
// killed rank. Without the Gloo addon the tests are skipped with the reason, except in CI
// (RPV_CI=1), where they fail.
import { spawn } from 'node:child_process';
import { mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCollective } from '../../src/train/distributed.js';
import { readSafetensors } from '../../src/util/safetensors.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const IN_CI = process.env.RPV_CI === '1';
const { addon, reason } = loadCollective();
if (!addon && !IN_CI) process.stdout.write(`distributed tests skipped: ${reason}\n`);

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-dist-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const recipe = path.join(root, 'recipe.yaml');
const cli = path.resolve(import.meta.dirname, '../../src/cli.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let nextPort = 31_000 + Math.floor(Math.random() * 2000);

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
  await fs.writeFile(recipe, recipeText(path.join(root, 'unused'), shards, model, 'scheduler: {type: constant, warmup_steps: 1}\n'));
});

/** The CLI in a child process (SIGKILLed after 120 s): its exit code (-1 when signalled) and output. */
function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = new Promise<number>((resolve) =>
    child.on('exit', (c, signal) => {
      clearTimeout(timer);
      resolve(signal ? -1 : (c ?? -1));
    }),
  );
  return { child, code, out: () => out };
}

const trainArgs = (out: string, ...extra: string[]) => ['train', recipe, `output_dir=${out}`, 'train.log_every_steps=1', 'checkpoint.every_steps=2', 'eval.every_steps=0', '--no-progress', ...extra];

/** One process per rank with the torchrun environment. */
function ranks(n: number, args: (rank: number) => string[], env: (rank: number) => Record<string, string> = () => ({})) {
  const port = nextPort++;
  return Array.from({ length: n }, (_, rank) => run(args(rank), { RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RPV_MATMUL_THREADS: '1', ...env(rank) }));
}

const losses = (out: string) =>
  readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; step: number; loss: number })
    .filter((m) => m.type === 'train')
    .map((m) => m.loss);

async function adapterValues(dir: string): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const file of ['adapter_model.safetensors', 'projector.safetensors']) {
    for (const [name, t] of Object.entries((await readSafetensors(path.join(dir, file))).tensors)) out.set(`${file}:${name}`, t.data as Float32Array);
  }
  return out;
}

function expectClose(a: number[], b: number[], tol: number): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `value ${i}: ${a[i]} vs ${b[i]}`).toBeLessThanOrEqual(tol);
}

async function expectSameAdapter(a: string, b: string): Promise<void> {
  const va = await adapterValues(a);
  const vb = await adapterValues(b);
  expect([...va.keys()].sort()).toEqual([...vb.keys()].sort());
  for (const [name, x] of va) {
    const y = vb.get(name)!;
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    expect(worst, name).toBeLessThanOrEqual(1e-5);
  }
}

describe('distributed route', () => {
  it('is available wherever RPV_CI is set (CI installs libgloo-dev)', () => {
    if (IN_CI) expect(reason).toMatch(/^Gloo \(TCP\)/);
  });
});

describe.skipIf(!addon && !IN_CI)('rpv train on 2 ranks (Gloo, loopback)', () => {
  const single = path.join(root, 'single');

  beforeAll(async () => {
    const one = run(trainArgs(single, 'train.grad_accum_steps=4'));
    expect(await one.code, one.out()).toBe(0);
  }, 120_000);

  it('2 ranks x accumulation 2 give the losses and adapter of 1 rank x accumulation 4', async () => {
    const out = path.join(root, 'two');
    const job = run([...trainArgs(out, 'train.grad_accum_steps=2'), '--nproc', '2'], { RPV_MATMUL_THREADS: '1' });
    expect(await job.code, job.out()).toBe(0);
    expect(losses(single)).toHaveLength(6);
    expectClose(losses(out), losses(single), 1e-5);
    await expectSameAdapter(path.join(out, 'adapter'), path.join(single, 'adapter'));
  }, 120_000);

  it('with data.packing, 2 ranks x accumulation 2 give the losses and adapter of 1 rank x accumulation 4 packed', async () => {
    // The step's samples are packed once, over the whole global step, then its rows shared out:
    // the same rows as one process, whatever the number of ranks.
    const one = path.join(root, 'packed-one');
    const single = run(trainArgs(one, 'train.grad_accum_steps=4', 'data.packing=true'));
    expect(await single.code, single.out()).toBe(0);
    const two = path.join(root, 'packed-two');
    const job = run([...trainArgs(two, 'train.grad_accum_steps=2', 'data.packing=true'), '--nproc', '2'], { RPV_MATMUL_THREADS: '1' });
    expect(await job.code, job.out()).toBe(0);
    expect(losses(one)).toHaveLength(6);
    expectClose(losses(two), losses(one), 1e-5);
    await expectSameAdapter(path.join(two, 'adapter'), path.join(one, 'adapter'));
  }, 120_000);

  it('a checkpoint of 2 ranks resumes on 1 rank, and one of 1 rank on 2, as the uninterrupted run', async () => {
    // 2 -> 1: steps 1-2 on 2 ranks (a checkpoint mid-epoch), steps 3-6 on 1 rank.
    const a = path.join(root, 'two-then-one');
    const first = ranks(2, () => trainArgs(a, 'train.grad_accum_steps=2', 'train.max_steps=2'));
    for (const r of first) expect(await r.code, r.out()).toBe(0);
    // The recipe's accumulation (2) is the run's: 1 rank keeps the global batch with 4.
    // A resume continues with the run's own recipe (its max_steps=2): back to the recipe's 6.
    const second = run(trainArgs(a, `resume=${a}`, 'train.max_steps=6'));
    expect(await second.code, second.out()).toBe(0);
    expect(second.out()).toContain('train: resume: 2 -> 1 ranks: train.grad_accum_steps 2 -> 4, keeping the global batch of 4 micro-batches');
    expectClose(losses(a), losses(single), 1e-5);
    await expectSameAdapter(path.join(a, 'adapter'), path.join(single, 'adapter'));
    // 1 -> 2.
    const b = path.join(root, 'one-then-two');
    const head = run(trainArgs(b, 'train.grad_accum_steps=4', 'train.max_steps=2'));
    expect(await head.code, head.out()).toBe(0);
    const tail = ranks(2, () => trainArgs(b, 'train.grad_accum_steps=4', `resume=${b}`, 'train.max_steps=6'));
    for (const r of tail) expect(await r.code, r.out()).toBe(0);
    expectClose(losses(b), losses(single), 1e-5);
    await expectSameAdapter(path.join(b, 'adapter'), path.join(single, 'adapter'));
  }, 120_000);

  it('a global batch that the new number of ranks cannot share is refused', async () => {
    const c = path.join(root, 'odd');
    const head = run(trainArgs(c, 'train.grad_accum_steps=3', 'train.max_steps=2'));
    expect(await head.code, head.out()).toBe(0);
    const tail = ranks(2, () => trainArgs(c, 'train.grad_accum_steps=3', `resume=${c}`));
    for (const r of tail) expect(await r.code).toBe(1);
    expect(tail[0]!.out()).toContain(
      `train: resume=${c}: the run's global batch is 1 rank(s) x 3 micro-batches = 3, which 2 ranks cannot share equally; run on a number of ranks that divides 3, or set train.grad_accum_steps (the global batch then becomes 2 x it)`,
    );
  }, 120_000);

  it('a wrong MASTER_PORT gives an error naming the address, not a hang', async () => {
    const out = path.join(root, 'wrong-port');
    const good = nextPort++;
    const bad = nextPort++;
    const job = ranks(2, () => trainArgs(out), (rank) => ({ MASTER_PORT: String(rank === 0 ? good : bad), RPV_DIST_TIMEOUT_SEC: '3' }));
    const [code0, code1] = await Promise.all(job.map((r) => r.code));
    expect(code1).toBe(1);
    expect(job[1]!.out()).toContain(
      `train: rank 1: cannot reach the rendezvous store at 127.0.0.1:${bad} (MASTER_ADDR:MASTER_PORT) within 3 s: Connection refused; check that rank 0 runs and that every rank has the same MASTER_ADDR and MASTER_PORT`,
    );
    expect(code0).toBe(1);
    expect(job[0]!.out()).toContain(`train: rank 0: the rendezvous store at 127.0.0.1:${good} gave no `);
  }, 60_000);

  it('kill -9 of one rank ends the other, naming the lost rank', async () => {
    const out = path.join(root, 'killed');
    const job = ranks(2, () => [...trainArgs(out), 'train.max_steps=100000', 'checkpoint.every_steps=0'], () => ({ RPV_DIST_TIMEOUT_SEC: '20' }));
    for (let i = 0; i < 1200; i++) {
      const file = path.join(out, 'metrics.jsonl');
      const lines = await fs.readFile(file, 'utf8').then((t) => t.split('\n').filter(Boolean).length, () => 0);
      if (lines >= 2) break;
      await sleep(50);
    }
    job[1]!.child.kill('SIGKILL');
    // The bound: the other rank ends by itself (the test's own kill comes at 120 s).
    expect(await job[0]!.code).toBe(1);
    expect(job[0]!.out()).toMatch(/train: rank 0: step \d+: [a-z -]+: lost rank 1 \(/);
  }, 120_000);
});
