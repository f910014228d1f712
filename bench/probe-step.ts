// Temporary probe: one LoRA + projector step on a real-shaped model (not committed).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend.js';
import { loadModel } from '../src/model/load.js';
const dir = process.argv[2];
const seq = Number(process.argv[3] ?? 512);
const ckpt = process.argv[4] === 'ckpt';
const steps = Number(process.argv[5] ?? 2);
await initBackend({ backend: 'wasm', log: null });
let t0 = performance.now();
const model = await loadModel(dir, { log: console.log });
console.log('load ms', (performance.now() - t0).toFixed(0), 'rss MB', (process.memoryUsage().rss / 2 ** 20).toFixed(0));
model.addLora({ rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 });
model.addProjector({ featureDim: 128, seed: 2 });
model.gradientCheckpointing = ckpt;
const vid = model.videoTokenId!;
const ids = new Int32Array(seq);
const labels = new Int32Array(seq);
for (let t = 0; t < seq; t++) { ids[t] = t >= 2 && t < 34 ? vid : 3 + ((t * 7919) % 400); labels[t] = t < 42 ? -100 : ids[t]; }
const features = { data: Float32Array.from({ length: 32 * 128 }, (_, i) => Math.sin(i)), shape: [1, 32, 128] as [number, number, number] };
const vars = model.trainableVariables();
const opt = tf.train.adam(1e-4);
for (let s = 0; s < steps; s++) {
  t0 = performance.now();
  const { value, grads } = tf.variableGrads(() => { const r = model.computeLoss({ inputIds: ids, batch: 1, video: { features } }, labels, { training: true, seed: s }); return tf.div(r.sum, r.count) as tf.Scalar; }, vars);
  opt.applyGradients(grads as any);
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads)]);
  console.log(`step ${s} loss ${loss.toFixed(5)} ms ${(performance.now() - t0).toFixed(0)} rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB maxrss ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB tensors ${tf.memory().numTensors} heapMB ${(tf.memory().numBytes / 2 ** 20).toFixed(0)}`);
}
