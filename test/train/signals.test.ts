// Signals to `rpv train`, as a terminal, a shell and a process manager send them: SIGHUP stops as
// SIGTERM does, exit codes are 128 + the signal's number, a second signal says whether the
// finished steps are in a checkpoint, and a trainer whose parent dies stops instead of running on.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-signals-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const cli = path.resolve(import.meta.dirname, '../../src/cli.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
});

/** `node --import tsx cli.ts train` arguments for a long run into `out` that checkpoints only when stopped. */
async function trainArgs(out: string): Promise<string[]> {
  const file = path.join(root, `${path.basename(out)}.yaml`);
  await fs.writeFile(file, recipeText(out, shards, model));
  return ['--import', 'tsx', cli, 'train', file, 'train.max_steps=100000', 'checkpoint.every_steps=0', 'eval.every_steps=0', '--no-progress'];
}

const trainSteps = (out: string) => {
  const file = path.join(out, 'metrics.jsonl');
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
};

/** The CLI in a child process, with its output gathered; SIGKILLed after 120 s. */
function start(args: string[]) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = new Promise<number | null>((resolve) =>
    child.on('exit', (c, signal) => {
      clearTimeout(timer);
      resolve(signal ? -1 : c);
    }),
  );
  return { child, code, out: () => out, err: () => err };
}

async function untilSteps(out: string, n: number, running: { code: Promise<unknown> }): Promise<void> {
  let exited = false;
  void running.code.then(() => (exited = true));
  for (let i = 0; i < 2400 && !exited && trainSteps(out) < n; i++) await sleep(50);
}

describe('rpv train and signals', () => {
  for (const [signal, code] of [
    ['SIGHUP', 129],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal} finishes the step, saves a checkpoint and exits ${code}`, async () => {
      const out = path.join(root, signal.toLowerCase());
      const run = start(await trainArgs(out));
      await untilSteps(out, 2, run);
      run.child.kill(signal);
      expect(await run.code, run.err()).toBe(code);
      const step = trainSteps(out);
      expect(step).toBeGreaterThanOrEqual(2);
      const checkpoint = path.join(out, 'checkpoints', `step-${String(step).padStart(6, '0')}`);
      expect(run.out()).toBe(`stopped at step ${step}/100000; checkpoint ${checkpoint}\n`);
      expect(existsSync(path.join(checkpoint, 'manifest.json'))).toBe(true);
      expect(existsSync(path.join(out, 'train.lock'))).toBe(false);
    });
  }

  it('a second Ctrl-C exits 130 at once and says whether a checkpoint was written', async () => {
    const out = path.join(root, 'twice');
    const run = start(await trainArgs(out));
    await untilSteps(out, 2, run);
    run.child.kill('SIGINT');
    for (let i = 0; i < 2400 && !run.err().includes('interrupt: finishing this step'); i++) await sleep(5);
    run.child.kill('SIGINT');
    expect(await run.code, run.err()).toBe(130);
    // The step in flight may or may not have finished, and its checkpoint been written, before
    // the second signal: the message says which, and the folder agrees with it.
    const latest = path.join(out, 'checkpoints', 'latest');
    if (existsSync(latest)) {
      const name = readFileSync(latest, 'utf8').trim();
      expect(run.err()).toContain(`\ninterrupt: second signal, exiting now; checkpoint ${path.join(out, 'checkpoints', name)} holds the last finished step (${Number(name.slice(5))})\n`);
    } else {
      const said = /\ninterrupt: second signal, exiting now; no checkpoint was written \((\d+) steps finished\)\n/.exec(run.err());
      expect(said, run.err()).not.toBeNull();
      // metrics.jsonl may hold the line of a step whose end the loop had not yet seen.
      expect(trainSteps(out) - Number(said![1])).toBeOneOf([0, 1]);
    }
    const left = (await fs.readdir(out, { recursive: true })).filter((f) => f.endsWith('.tmp') || f === 'train.lock');
    expect(left).toEqual([]);
  });

  it('a trainer whose parent process dies stops as on SIGTERM', async () => {
    // The wrapper starts the trainer (as `npx rpv train` starts node) and is then killed as a
    // process manager kills what it started; the trainer is not told.
    const out = path.join(root, 'orphan');
    await fs.mkdir(out, { recursive: true });
    const logOut = path.join(root, 'orphan.out');
    const logErr = path.join(root, 'orphan.err');
    const wrapperCode = `
      const fs = require('node:fs');
      const { spawn } = require('node:child_process');
      const c = spawn(process.execPath, JSON.parse(process.argv[1]), { stdio: ['ignore', fs.openSync(process.argv[2], 'w'), fs.openSync(process.argv[3], 'w')] });
      process.stdout.write(String(c.pid) + '\\n');
      setInterval(() => {}, 1000);`;
    const wrapper = spawn(process.execPath, ['-e', wrapperCode, JSON.stringify(await trainArgs(out)), logOut, logErr], { stdio: ['ignore', 'pipe', 'inherit'] });
    let trainerPid = 0;
    wrapper.stdout.on('data', (d) => (trainerPid = Number(String(d).trim())));
    const wrapperExit = new Promise((resolve) => wrapper.on('exit', resolve));
    const stopped = () => (existsSync(logOut) ? readFileSync(logOut, 'utf8') : '');
    try {
      await untilSteps(out, 2, { code: wrapperExit });
      expect(trainerPid).toBeGreaterThan(0);
      wrapper.kill('SIGTERM');
      await wrapperExit;
      for (let i = 0; i < 1200 && !stopped().startsWith('stopped'); i++) await sleep(50);
      const step = trainSteps(out);
      expect(stopped(), readFileSync(logErr, 'utf8')).toBe(`stopped at step ${step}/100000; checkpoint ${path.join(out, 'checkpoints', `step-${String(step).padStart(6, '0')}`)}\n`);
      expect(readFileSync(logErr, 'utf8')).toContain(`\ntrain: the parent process ${wrapper.pid} has exited; stopping as on SIGTERM\n`);
      for (let i = 0; i < 200 && existsSync(path.join(out, 'train.lock')); i++) await sleep(50);
      expect(existsSync(path.join(out, 'train.lock'))).toBe(false);
    } finally {
      wrapper.kill('SIGKILL');
      if (trainerPid > 0) {
        try {
          process.kill(trainerPid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
});

