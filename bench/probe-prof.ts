// Temporary probe: where a real-shaped step spends its time (not committed).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend.js';
import { loadModel } from '../src/model/load.js';
import { loadNativeAddon } from '../src/native/addon.js';
const dir = process.argv[2];
const seq = Number(process.argv[3] ?? 512);
const ckpt = process.argv[4] === 'ckpt';
await initBackend({ backend: 'wasm', log: null });
const addon = loadNativeAddon().addon as any;
const acc: Record<string, { ms: number; n: number }> = {};
for (const name of ['frozenMatmul', 'gatherRows', 'crossEntropy', 'gemm']) {
  const f = addon[name];
  addon[name] = (...args: unknown[]) => { const t = performance.now(); const r = f(...args); const e = (acc[name] ??= { ms: 0, n: 0 }); e.ms += performance.now() - t; e.n++; return r; };
}
const model = await loadModel(dir, { log: console.log });
model.addLora({ rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 });
model.addProjector({ featureDim: 128, seed: 2 });
model.gradientCheckpointing = ckpt;
const vid = model.videoTokenId!;
const ids = new Int32Array(seq);
const labels = new Int32Array(seq);
for (let t = 0; t < seq; t++) { ids[t] = t >= 2 && t < 34 ? vid : 3 + ((t * 7919) % 400); labels[t] = t < 42 ? -100 : ids[t]; }
const features = { data: Float32Array.from({ length: 32 * 128 }, (_, i) => Math.sin(i)), shape: [1, 32, 128] as [number, number, number] };
const vars = model.trainableVariables();
const step = () => { const { value, grads } = tf.variableGrads(() => { const r = model.computeLoss({ inputIds: ids, batch: 1, video: { features } }, labels, { training: true, seed: 1 }); return tf.div(r.sum, r.count) as tf.Scalar; }, vars); tf.dispose(Object.values(grads)); return value; };
(await step().data());
for (const k of Object.keys(acc)) delete acc[k];
const t0 = performance.now();
const useProf = process.argv[5] === 'prof';
const prof = useProf ? await tf.profile(async () => { const v = step(); await v.data(); v.dispose(); }) : (await (async () => { const v = step(); await v.data(); v.dispose(); return { kernels: [] as any[] }; })());
const wall = performance.now() - t0;
const by = new Map<string, { ms: number; n: number }>();
for (const k of prof.kernels) { const e = by.get(k.name) ?? { ms: 0, n: 0 }; e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0; e.n++; by.set(k.name, e); }
console.log('wall', wall.toFixed(0), 'ms; native:', JSON.stringify(Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, `${v.ms.toFixed(0)}ms/${v.n}`]))));
for (const [name, e] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 22)) console.log(name.padEnd(24), e.ms.toFixed(0).padStart(8), 'ms', String(e.n).padStart(6));
