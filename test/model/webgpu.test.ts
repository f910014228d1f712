/**
 * The webgpu backend on whatever adapter Dawn offers (on CI: Mesa's llvmpipe through EGL, the
 * software path the README names): started by name, kernels split to fit the adapter's limits,
 * Dawn's errors thrown naming the kernel, the golden log-probs through `rpv score --backend webgpu`,
 * a `tfjs:` frame encoder, and 100 training steps without growth in tensors or GPU bytes.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as tfc from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createEncoder, initBackend, loadModel, writeTinyModel, type BackendInfo, type TinyModelOptions } from '../../src/index.js';
import { tfCore } from '../../src/model/backend.js';
import { configureWebgpuGuard, webgpuGuardStats } from '../../src/model/webgpu-guard.js';
import { AdamW, clipGradNorm } from '../../src/train/adamw.js';
import { reportSkip, webgpuUnavailable } from './webgpu-env.js';

const unavailable = await webgpuUnavailable();
reportSkip('test/model/webgpu.test.ts', unavailable);

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = () => mkdtempSync(path.join(tmpdir(), 'rpv-webgpu-'));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI and wait for the process to end on its own (a hang fails the test's timeout). */
function runCli(args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('WebGPU availability', () => {
  it('is there wherever RPV_CI is set (CI installs the software path)', () => {
    if (process.env.RPV_CI) expect(unavailable).toBeNull();
  });

  it('src/ reads tensors asynchronously only: synchronous reads throw on webgpu under Node', async () => {
    const files = (await fs.readdir(path.resolve('src'), { recursive: true })).filter((f) => f.endsWith('.ts'));
    const sync: string[] = [];
    for (const f of files) {
      const text = await fs.readFile(path.resolve('src', f), 'utf8');
      text.split('\n').forEach((line, i) => {
        if (/\.(dataSync|arraySync|bufferSync)\(/.test(line)) sync.push(`src/${f}:${i + 1}`);
      });
    }
    expect(sync).toEqual([]);
  });
});

describe.skipIf(unavailable !== null)('webgpu backend', () => {
  let info: BackendInfo;
  let tf: typeof tfc;
  let maxBuffers: number;

  beforeAll(async () => {
    info = await initBackend({ backend: 'webgpu', log: null });
    tf = await tfCore();
    maxBuffers = info.webgpu!.deviceLimits.maxStorageBuffersPerShaderStage;
  });

  it('starts by name, on a device with the adapter limits', () => {
    expect(info.backend).toBe('webgpu');
    expect(info.package).toBe('@tensorflow/tfjs-backend-webgpu');
    expect(info.webgpu!.deviceLimits).toEqual(info.webgpu!.adapter.limits);
    // WebGPU's default is 8 (4 in compatibility mode); the adapter's own limit is asked for.
    expect(maxBuffers).toBeGreaterThan(8);
    expect(info.gpu).toBe(!info.webgpu!.adapter.software);
    expect(info.routes).toEqual([{ route: 'webgpu', taken: true, reason: expect.stringMatching(/^(vulkan|opengles|metal|d3d12): /) }]);
    expect(info.webgpu!.packages).toBe('webgpu 0.6.2, @tensorflow/tfjs-backend-webgpu 4.22.0');
  });

  it('dataSync throws here (tfjs-backend-webgpu reads synchronously through an OffscreenCanvas)', async () => {
    // Large enough to run on the GPU (tfjs computes small tensors whose values are in memory on the CPU).
    const x = tf.add(tf.ones([2048]), 1);
    expect(() => x.dataSync()).toThrow('OffscreenCanvas is not defined');
    expect(Array.from(await x.data())).toEqual(new Array(2048).fill(2));
    x.dispose();
  });

  it('sums AddN inputs beyond the storage-buffer limit in chunks that fit', async () => {
    const n = 3 * maxBuffers + 2;
    const xs = Array.from({ length: n }, (_, i) => tf.tensor2d([i + 1, -2 * i, 0.5, i * i], [2, 2]));
    const before = webgpuGuardStats().addNSplits;
    const sum = tf.addN(xs);
    expect(Array.from(await sum.data())).toEqual([(n * (n + 1)) / 2, -n * (n - 1), n / 2, ((n - 1) * n * (2 * n - 1)) / 6]);
    expect(webgpuGuardStats().addNSplits).toBe(before + 1);
    tf.dispose([sum, ...xs]);
  });

  it('a program over the storage-buffer limit is an error naming the kernel, before anything runs', () => {
    const n = maxBuffers + 4;
    const xs = Array.from({ length: n }, () => tf.ones([3]));
    configureWebgpuGuard({ splitAddN: false });
    try {
      expect(() => tf.addN(xs)).toThrow(
        `webgpu: kernel AddN: AddNPackedProgram binds ${n + 1} storage buffers (${n} inputs + the output); this adapter allows ${maxBuffers} per shader stage (maxStorageBuffersPerShaderStage)`,
      );
    } finally {
      configureWebgpuGuard({ splitAddN: true });
      tf.dispose(xs);
    }
  });

  it('a buffer over the binding-size limit is an error naming the kernel', () => {
    const limits = info.webgpu!.deviceLimits;
    const max = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const n = max / 4 + 1;
    const which = limits.maxStorageBufferBindingSize <= limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
    expect(() => tf.fill([n], 1)).toThrow(`webgpu: kernel Fill: the output [${n}] is ${n * 4} bytes; this adapter binds at most ${max} bytes per buffer (${which})`);
  });

  it("an error Dawn reports is thrown by the next read, naming the kernel; later reads are unaffected", async () => {
    const n = maxBuffers + 4;
    const xs = Array.from({ length: n }, (_, i) => tf.add(tf.ones([3]), i));
    const errorsBefore = webgpuGuardStats().dawnErrors;
    configureWebgpuGuard({ splitAddN: false, precheck: false });
    let sum: tfc.Tensor;
    try {
      // Without the split and the check, Dawn rejects the pipeline; tfjs alone would return stale numbers.
      sum = tf.addN(xs);
    } finally {
      configureWebgpuGuard({ splitAddN: true, precheck: true });
    }
    await expect(sum.data()).rejects.toThrow(
      `webgpu: kernel AddN: Dawn rejected it: The number of storage buffers (${n + 1}) in the Compute stage exceeds the maximum per-stage limit (${maxBuffers}). (its output and everything computed from it are invalid)`,
    );
    expect(webgpuGuardStats().dawnErrors).toBeGreaterThan(errorsBefore);
    const ok = tf.addN(xs);
    expect(Array.from(await ok.data())).toEqual(new Array(3).fill(n + (n * (n - 1)) / 2));
    tf.dispose([sum, ok, ...xs]);
  });

  it('runs a tfjs: frame encoder (converter graph model) with the same features as computed by hand', async () => {
    const W = [
      [0.5, -1, 2, 0, 0.25],
      [1, 0.5, -0.5, 3, 0],
      [-2, 1, 0, 1, -0.75],
    ];
    const folder = path.join(tmp(), 'graph');
    await fs.mkdir(folder);
    const node = (name: string, op: string, extra: object) => ({ name, op, ...extra });
    await fs.writeFile(
      path.join(folder, 'model.json'),
      JSON.stringify({
        format: 'graph-model',
        generatedBy: 'hand',
        convertedBy: 'rpv test',
        modelTopology: {
          node: [
            node('frames', 'Placeholder', { attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [{ size: '-1' }, { size: '-1' }, { size: '-1' }, { size: '3' }] } } } }),
            node('axes', 'Const', { attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: { dim: [{ size: '2' }] } } } } }),
            node('pooled', 'Mean', { input: ['frames', 'axes'], attr: { keep_dims: { b: false }, T: { type: 'DT_FLOAT' }, Tidx: { type: 'DT_INT32' } } }),
            node('w', 'Const', { attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '3' }, { size: '5' }] } } } } }),
            node('features', 'MatMul', { input: ['pooled', 'w'], attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } } }),
          ],
          versions: { producer: 1 },
        },
        weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'axes', shape: [2], dtype: 'int32' }, { name: 'w', shape: [3, 5], dtype: 'float32' }] }],
      }),
    );
    await fs.writeFile(path.join(folder, 'w.bin'), Buffer.concat([Buffer.from(new Int32Array([1, 2]).buffer), Buffer.from(new Float32Array(W.flat()).buffer)]));
    const enc = await createEncoder(`tfjs:${folder}`, { batchSize: 2, backend: 'webgpu' });
    expect(enc.describe()).toMatchObject({ backend: 'webgpu', format: 'graph-model', featureDim: 5, tokensPerFrame: 1 });
    const frames = [0, 1, 2].map((seed) => Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i * 7 + seed * 31) % 256));
    const before = tf.memory().numTensors;
    const out = await enc.encode(frames, 16);
    expect(tf.memory().numTensors).toBe(before);
    frames.forEach((f, i) => {
      const mean = [0, 0, 0];
      for (let k = 0; k < f.length; k++) mean[k % 3]! += f[k]! / 255 / (16 * 16);
      for (let j = 0; j < 5; j++) expect(out[i * 5 + j]).toBeCloseTo(mean.reduce((s, m, c) => s + m * W[c]![j]!, 0), 4);
    });
    enc.dispose?.();
  });

  it('100 training steps (LoRA on every linear + projector, AdamW, clipping) hold tensors and GPU bytes flat', async () => {
    const dir = path.join(tmp(), 'm');
    await writeTinyModel(dir, { hiddenSize: 16, numLayers: 1, numHeads: 2, numKvHeads: 1, vocabSize: 270, seed: 1 });
    const model = await loadModel(dir, { backend: 'webgpu' });
    model.addLora({ rank: 2, alpha: 4, dropout: 0.1, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 });
    model.addProjector({ featureDim: 8, seed: 2 });
    const vars = model.trainableVariables();
    // 14 LoRA matrices + 4 projector tensors: the gradient norm's AddN has more inputs than a
    // 16-buffer adapter binds, so the split is exercised on every step there.
    expect(vars.length).toBe(18);
    const params = vars.map((v, i) => ({ name: `p${i}`, variable: v, group: i >= 14 ? 'projector' : 'lora' }));
    const optimizer = new AdamW(params, { weightDecay: 0.01 });
    const vid = model.videoTokenId!;
    const ids = Array.from({ length: 8 }, (_, t) => (t >= 1 && t <= 2 ? vid : 3 + ((t * 7) % 50)));
    const labels = ids.map((id, t) => (t <= 2 ? -100 : id));
    const features = { data: Float32Array.from({ length: 16 }, (_, i) => Math.sin(i)), shape: [1, 2, 8] as [number, number, number] };
    const tensors: number[] = [];
    const bytes: number[] = [];
    const losses: number[] = [];
    for (let step = 0; step < 100; step++) {
      const { value, grads } = tf.variableGrads(() => {
        const { sum, count } = model.computeLoss({ inputIds: ids, batch: 1, video: { features } }, labels, { training: true, seed: step });
        return tf.div(sum, count) as tfc.Scalar;
      }, vars);
      losses.push((await value.data())[0]!);
      value.dispose();
      const g = new Map(params.map((p) => [p.name, grads[p.variable.name]!]));
      await clipGradNorm(g, 0.5);
      optimizer.step(g, () => 1e-2);
      for (const t of g.values()) t.dispose();
      const m = tf.memory() as tfc.MemoryInfo & { numBytesInGPU: number };
      tensors.push(m.numTensors);
      bytes.push(m.numBytesInGPU);
    }
    expect(new Set(tensors.slice(1)).size).toBe(1);
    // GPU bytes move by a uniform buffer or two with where the last submission fell; they do not grow.
    expect(Math.max(...bytes.slice(50))).toBeLessThanOrEqual(Math.max(...bytes.slice(1, 50)));
    expect(losses[99]).toBeLessThan(losses[0]! - 0.1);
    optimizer.dispose();
    model.dispose();
  });
});

describe.skipIf(unavailable !== null)('rpv on webgpu, as processes that exit by themselves', () => {
  const goldenDir = path.join(here, 'golden');
  for (const file of readdirSync(goldenDir).filter((f) => f.endsWith('.json'))) {
    it(`rpv score --backend webgpu equals the numpy reference: ${file}`, async () => {
      const golden = JSON.parse(readFileSync(path.join(goldenDir, file), 'utf8')) as { model: TinyModelOptions; text: string; ids: number[]; logprobs: number[] };
      const dir = path.join(tmp(), 'm');
      await writeTinyModel(dir, golden.model);
      const r = await runCli(['score', '--model', dir, '--text', golden.text, '--backend', 'webgpu', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { ids: number[]; logprobs: (number | null)[] };
      expect(out.ids).toEqual(golden.ids);
      let maxDiff = 0;
      golden.logprobs.forEach((lp, i) => (maxDiff = Math.max(maxDiff, Math.abs((out.logprobs[i + 1] as number) - lp))));
      // float32 on the GPU against float64: measured 1.9e-5 (llama) and 1.6e-5 (qwen2) on llvmpipe.
      expect(maxDiff).toBeLessThan(2e-3);
    });
  }

  it('rpv env --json reports the adapter by name, and auto says why it did or did not take WebGPU', async () => {
    const named = await runCli(['env', '--json', '--backend', 'webgpu']);
    expect(named.code, named.stderr).toBe(0);
    const b = (JSON.parse(named.stdout) as { backend: BackendInfo }).backend;
    expect(b.backend).toBe('webgpu');
    const adapter = b.webgpu!.adapter;
    expect(typeof adapter.software).toBe('boolean');
    expect(adapter.software ? adapter.softwareReason : 'hardware').toMatch(/^(device|description|vendor|architecture) "|^Dawn marks it|^hardware$/);
    expect(b.webgpuProbes!.map((p) => p.backend).length).toBeGreaterThanOrEqual(1);
    const auto = await runCli(['env', '--json']);
    expect(auto.code, auto.stderr).toBe(0);
    const a = (JSON.parse(auto.stdout) as { backend: BackendInfo }).backend;
    expect(a.routes.map((r) => r.route)).toEqual(['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm', 'cpu']);
    const route = a.routes.find((r) => r.route === 'webgpu')!;
    // auto takes WebGPU only on a hardware adapter.
    expect(route.taken).toBe(adapter.software ? false : true);
    if (adapter.software) expect(route.reason).toMatch(/^(no adapter|only a software adapter, used only when asked for by name \(--backend webgpu\)) \(/);
  });
});
