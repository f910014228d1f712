// The addon is shared by every Node environment of a process: worker threads multiplying at the
// same time as the main thread get correct results, and a worker exiting (its environment's
// cleanup) leaves the main thread's thread pool working.
import { Worker } from 'node:worker_threads';
import { expect, it } from 'vitest';
import { GemmParam, addonCandidates, loadNativeAddon } from '../../src/native/addon.js';
import { sgemm } from '../../src/native/gemm.js';
import { maxRelError, randomArray, referenceGemm } from './helpers.js';

const load = loadNativeAddon();
if (!load.addon) throw new Error(`native addon must be built for these tests: ${load.reason}`);
const addon = load.addon;

// Plain JS so the worker needs no TypeScript loader: C = A B for one shape, checked against a
// float64 loop, repeated; posts the largest error seen.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.path);
const [m, n, k] = [70, 90, 110];
const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));
const ref = new Float64Array(m * n);
for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) { let s = 0; for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j]; ref[i * n + j] = s; }
const p = new Float64Array(workerData.paramCount);
p[${GemmParam.batch}] = 1; p[${GemmParam.m}] = m; p[${GemmParam.n}] = n; p[${GemmParam.k}] = k;
p[${GemmParam.lda}] = k; p[${GemmParam.ldb}] = n; p[${GemmParam.ldc}] = n;
let worst = 0;
for (let rep = 0; rep < 40; rep++) {
  const c = new Float32Array(m * n);
  addon.gemm(a, b, c, p);
  for (let i = 0; i < c.length; i++) worst = Math.max(worst, Math.abs(c[i] - ref[i]));
}
parentPort.postMessage(worst);
`;

function runWorker(): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: { path: load.path ?? addonCandidates()[0], paramCount: GemmParam.count } });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited with ${code}`));
    });
  });
}

it('multiplies correctly from worker threads and the main thread at once, and survives their exit', async () => {
  addon.setThreads(2);
  const [m, n, k] = [150, 120, 200];
  const a = randomArray(m * k, 1);
  const b = randomArray(k * n, 2);
  const ref = referenceGemm({ a, b, m, n, k });
  const workers = [runWorker(), runWorker()];
  for (let rep = 0; rep < 30; rep++) expect(maxRelError(sgemm({ a, b, m, n, k, addon }), ref)).toBeLessThan(1e-5);
  const errors = await Promise.all(workers);
  for (const e of errors) expect(e).toBeLessThan(1e-3);
  // Both workers' environments are gone; the pool is still there and still right.
  expect(addon.threads()).toBe(2);
  expect(maxRelError(sgemm({ a, b, m, n, k, addon }), ref)).toBeLessThan(1e-5);
});
