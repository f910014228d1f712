// The native kernels' thread pool (src/native/addon.cc): sized by the CPUs the process may use
// (affinity mask and cgroup quota, as defaultThreads()), started by the first kernel that needs it
// rather than when the addon loads, resized by setThreads; and `threads` given to initBackend takes
// effect even when something else (a `tfjs:` encoder, loadModel) started the backend first.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { describeBackend, initBackend } from '../../src/model/backend.js';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { defaultThreads } from '../../src/native/matmul.js';

const load = loadNativeAddon();
if (!load.addon) throw new Error(`native addon must be built for these tests: ${load.reason}`);
const addon: NativeAddon = load.addon;
const addonPath = load.path;
const originalThreads = addon.threads();
afterAll(() => addon.setThreads(originalThreads));

interface PoolReport {
  /** threads() of a freshly loaded addon. */
  threads: number;
  /** OS threads the process gained by loading the addon, by its first GEMM, after setThreads(3). */
  atLoad: number;
  byKernel: number;
  afterSetThreads3: number;
  /** os.availableParallelism() in the child. */
  cpus: number;
}

// Counts the process's OS threads (/proc/self/task) around loading the addon and using it.
const CHILD = `
const fs = require('fs');
const tasks = () => fs.readdirSync('/proc/self/task').length;
const before = tasks();
const a = require(process.argv[1]);
const atLoad = tasks() - before;
const threads = a.threads();
const m = 256, p = new Float64Array(a.paramCount);
p.set([1, m, m, m, 0, 0, 0, m, 0, 0, m, 0, 0, m, 0]);
const x = new Float32Array(m * m).fill(1);
a.gemm(x, x, new Float32Array(m * m), p);
const byKernel = tasks() - before;
a.setThreads(3);
const afterSetThreads3 = tasks() - before;
console.log(JSON.stringify({ threads, atLoad, byKernel, afterSetThreads3, cpus: require('os').availableParallelism() }));
`;

function runChild(prefix: string[]): PoolReport {
  const env = { ...process.env };
  delete env.RPV_MATMUL_THREADS;
  const [command, ...args] = [...prefix, process.execPath, '-e', CHILD, addonPath];
  const r = spawnSync(command, args, { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as PoolReport;
}

const linux = process.platform === 'linux' && existsSync('/proc/self/task');
const taskset = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p));

describe('native thread pool', () => {
  it.skipIf(!linux)('starts no thread when the addon loads, then as many as the CPUs this process may use, then what setThreads says', () => {
    const report = runChild([]);
    expect(report.threads).toBe(defaultThreads());
    expect(report.atLoad).toBe(0);
    expect(report.byKernel).toBe(report.threads - 1);
    expect(report.afterSetThreads3).toBe(2);
  });

  it.skipIf(!linux || !taskset)('follows the affinity mask, not the machine\'s cores', () => {
    const report = runChild([taskset!, '-c', '0']);
    expect(report.cpus).toBe(1);
    expect(report.threads).toBe(1);
    expect(report.byKernel).toBe(0);
  });

  it('takes initBackend\'s threads even when an earlier call started the backend', async () => {
    // What a `tfjs:` encoder or loadModel does first: start the backend without threads.
    const first = await initBackend({ backend: 'wasm', log: null });
    expect(first.nativeMatmul.active).toBe(true);
    const target = first.threads === 1 ? 2 : 1;
    // Then the trainer, with model.threads.
    const info = await initBackend({ backend: 'wasm', threads: target, log: null });
    expect(addon.threads()).toBe(target);
    expect(info.threads).toBe(target);
    expect(info.nativeMatmul.threads).toBe(target);
    expect(describeBackend()?.threads).toBe(target);
    expect(first.threads).toBe(target);
    await initBackend({ backend: 'wasm', threads: 3, log: null });
    expect(addon.threads()).toBe(3);
    // A later call without threads leaves them.
    await initBackend({ backend: 'wasm', log: null });
    expect(addon.threads()).toBe(3);
    await expect(initBackend({ backend: 'wasm', threads: 0, log: null })).rejects.toThrow('backend: threads must be a positive integer, found 0');
  });
});
