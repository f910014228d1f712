// Runs that cannot make progress: an epoch with nothing to train stops with its reason, and a
// signal ends a run that waits for data that does not come.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRecipe, readMetrics, train } from '../../src/index.js';
import { EpochTally, untrainableEpochMessage } from '../../src/train/epoch-tally.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-stop-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const cli = path.resolve(import.meta.dirname, '../../src/cli.ts');

/** Files served by the test server; the second and later GETs of a name in `stallAfterFirst` never get an answer. */
let server: http.Server;
let base = '';
const stallAfterFirst = new Set<string>();
const requests = new Map<string, number>();

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
  server = http.createServer(async (req, res) => {
    const name = decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1));
    const count = (requests.get(name) ?? 0) + 1;
    requests.set(name, count);
    if (stallAfterFirst.has(name) && count > 1) return; // headers never come
    try {
      res.end(await fs.readFile(path.join(shards, name)));
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await fs.rm(root, { recursive: true, force: true });
});

/** A cache limit that holds the largest Arrow shard but never two shards. */
async function oneShardLimit(): Promise<string> {
  const index = JSON.parse(await fs.readFile(path.join(shards, 'index.json'), 'utf8')) as { shards: { file: string; bytes: number }[] };
  const sizes = index.shards.filter((s) => s.file.endsWith('.arrow')).map((s) => s.bytes);
  expect(sizes.length).toBe(2);
  expect(Math.min(...sizes) + Math.max(...sizes)).toBeGreaterThan(Math.max(...sizes) * 1.2);
  return String(Math.ceil(Math.max(...sizes) * 1.2));
}

interface Run {
  code: Promise<number | null>;
  out: () => string;
  err: () => string;
  exited: () => boolean;
  kill: (signal: NodeJS.Signals) => void;
}

/** `rpv train <recipe> ...` in a child process; killed with SIGKILL after `deadlineMs`. */
function runCli(args: string[], deadlineMs: number, env: NodeJS.ProcessEnv = {}): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'train', ...args, '--no-progress'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  let done = false;
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  const code = new Promise<number | null>((resolve) =>
    child.on('exit', (c, signal) => {
      done = true;
      clearTimeout(timer);
      resolve(signal ? -1 : c);
    }),
  );
  return { code, out: () => out, err: () => err, exited: () => done, kill: (s) => child.kill(s) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('an epoch with nothing to train', () => {
  it('rpv train stops within seconds, naming the cause and the counts', async () => {
    const file = path.join(root, 'too-long.yaml');
    await fs.writeFile(file, recipeText(path.join(root, 'too-long'), shards, model));
    const run = runCli([file, 'prompt.max_tokens=20'], 60_000);
    expect(await run.code, run.err()).toBe(1);
    expect(run.err()).toBe(
      'rpv: train: no sample of an epoch could be trained: all 27 training samples are longer than prompt.max_tokens (20; the shortest has 190 tokens); 9 more are held out\n',
    );
  });

  it('the message lists every skip reason with its count', () => {
    const tally = new EpochTally(true);
    tally.add({ trained: 0, heldOut: 1, skipped: { 'too-long': 3, 'no-role-turn': 1 }, shortestTooLong: 700 });
    tally.add({ trained: 0, heldOut: 0, skipped: { 'too-long': 2 }, shortestTooLong: 612 });
    const limits = { maxTokens: 512, heldoutFraction: 0.1 };
    expect(untrainableEpochMessage(tally, limits)).toBe(
      'train: no sample of an epoch could be trained: of 6 training samples, 5 are longer than prompt.max_tokens (512; the shortest has 612 tokens) and 1 is without a turn of their role (nothing to train on); 1 more is held out',
    );
    expect(() => tally.check(limits)).toThrow(untrainableEpochMessage(tally, limits));
    // The rest of an epoch a resumed run started in proves nothing about the next epoch.
    const partial = new EpochTally(false);
    partial.add({ trained: 0, heldOut: 0, skipped: { 'too-long': 2 }, shortestTooLong: 600 });
    expect(() => partial.check(limits)).not.toThrow();
    const held = new EpochTally(true);
    held.add({ trained: 0, heldOut: 4, skipped: {}, shortestTooLong: null });
    expect(untrainableEpochMessage(held, limits)).toBe('train: no sample of an epoch could be trained: all 4 samples of the epoch are held out (data.heldout_fraction 0.1)');
  });
});

describe('a signal while the loader waits for data', () => {
  it('SIGTERM ends a run whose shards never arrive, at once, with exit code 143 (128 + 15)', async () => {
    // The dataset scan downloads each shard once into a cache too small for two of them, so the
    // loader finds shard 0 evicted; its own downloads then hang forever.
    stallAfterFirst.clear();
    requests.clear();
    for (const f of await fs.readdir(shards)) if (f.endsWith('.arrow')) stallAfterFirst.add(f);
    const file = path.join(root, 'stalled.yaml');
    await fs.writeFile(file, recipeText(path.join(root, 'stalled'), `"${base}/index.json"`, model));
    const run = runCli([file], 90_000, { RPV_CACHE_DIR: path.join(root, 'cache-stalled'), RPV_CACHE_LIMIT_BYTES: await oneShardLimit() });
    const loaderAsked = () => [...requests].some(([name, n]) => name.endsWith('.arrow') && n > 1);
    for (let i = 0; i < 1200 && !run.exited() && !loaderAsked(); i++) await sleep(50);
    expect(loaderAsked(), run.err()).toBe(true);
    await sleep(500);
    expect(run.exited(), run.err()).toBe(false);
    const sent = performance.now();
    run.kill('SIGTERM');
    expect(await run.code, run.err()).toBe(143);
    expect(performance.now() - sent).toBeLessThan(10_000);
    expect(run.out()).toBe('stopped at step 0/6\n');
    expect(run.err()).toContain('interrupt: finishing this step, saving a checkpoint, then exiting (Ctrl-C again to quit now)\n');
    expect(run.err()).toContain('\ninterrupted while waiting for data at step 0\n');
  });

  it('a stop while waiting saves the last finished step; resuming gives the losses of an unstopped run', async () => {
    // Unshuffled, the first batches come from shard 0 alone. The scan leaves only shard 1 in a
    // cache too small for two shards; the loader downloads shard 0 again (evicting shard 1), and
    // its download of shard 1 never ends.
    const overrides = ['data.shuffle=false', 'train.max_steps=6', 'checkpoint.every_steps=0', 'eval.every_steps=0'];
    const source = `"${base}/index.json"`;
    stallAfterFirst.clear();
    process.env.RPV_CACHE_DIR = path.join(root, 'cache-reference');
    const reference = await train(parseRecipe(recipeText(path.join(root, 'unstopped'), source, model), overrides, 'test.yaml'), { progressStream: null, log: () => {} });
    requests.clear();
    stallAfterFirst.add('shard-00001.arrow');
    const file = path.join(root, 'waiting.yaml');
    await fs.writeFile(file, recipeText(path.join(root, 'waiting'), source, model));
    const env = { RPV_CACHE_DIR: path.join(root, 'cache-waiting'), RPV_CACHE_LIMIT_BYTES: await oneShardLimit() };
    const run = runCli([file, ...overrides], 90_000, env);
    // Steps are taken until the samples of shard 1 are needed; then the run waits for good.
    const metricsFile = path.join(root, 'waiting', 'metrics.jsonl');
    const lines = async () => (existsSync(metricsFile) ? (await fs.readFile(metricsFile, 'utf8')).split('\n').filter(Boolean).length : 0);
    let steps = -1;
    for (let stable = 0; stable < 3000 && !run.exited(); ) {
      const n = await lines();
      stable = n === steps && n > 0 ? stable + 100 : 0;
      steps = n;
      await sleep(100);
    }
    expect(steps, run.err()).toBeGreaterThan(0);
    expect(steps).toBeLessThan(6);
    run.kill('SIGTERM');
    expect(await run.code, run.err()).toBe(143);
    const name = `step-${String(steps).padStart(6, '0')}`;
    expect(run.err()).toContain(`\ninterrupted while waiting for data: checkpoint ${path.join(root, 'waiting', 'checkpoints', name)} (step ${steps})\n`);
    expect(run.out()).toBe(`stopped at step ${steps}/6; checkpoint ${path.join(root, 'waiting', 'checkpoints', name)}\n`);

    stallAfterFirst.clear();
    const resumed = runCli([file, ...overrides, `resume=${path.join(root, 'waiting')}`], 90_000, env);
    expect(await resumed.code, resumed.err()).toBe(0);
    const losses = (await readMetrics(metricsFile)).filter((m) => m.type === 'train').map((m) => m.loss);
    expect(losses).toEqual(reference.losses);
  });
});
