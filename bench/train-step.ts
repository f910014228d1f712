/**
 * Train-step benchmark: tokens/s and ms per step of a LoRA + video-projector step (forward,
 * backward, Adam update) on each CPU route, beside the same model's step in PyTorch measured in
 * the same run.
 *
 *   npx tsx bench/train-step.ts [--models tiny,small] [--routes cpu,wasm,native,webgpu,torch]
 *                               [--steps N] [--warmup N] [--threads N] [--no-profile]
 *
 * Models (Qwen2 layout, written by writeTinyModel into bench/data/train-step/ if missing):
 *   tiny:  hidden 256, 4 layers, 4 heads (2 kv), seq 128, batch 4
 *   small: hidden 512, 4 layers, 8 heads (4 kv), seq 256, batch 4
 * each with LoRA r 8 on q, k, v, o and an mlp2x_gelu projector fed 32 video tokens per sample;
 *   qwen0.5b: Qwen2.5-0.5B's shapes and vocabulary (24 layers, hidden 896, 151,936 tokens; random
 *   BF16 weights, `make-tiny-model --preset qwen2.5-0.5b`), seq 512, batch 1, LoRA r 16 on all
 *   seven linear modules + the projector: the real-size case (not in the default --models). Of the
 *   tfjs routes only wasm + native runs it unless --routes names the others. rpv maps the BF16
 *   weights and recomputes layers in the backward pass when its memory plan says so
 *   (src/train/memory.ts, what `auto` picks);
 *   PyTorch holds float32 copies of the weights and every activation, as a plain PyTorch loop
 *   does. Peak RSS of each route is printed beside its time.
 * Routes: tfjs cpu; tfjs wasm as shipped; wasm + rpv's native matmul (src/native); tfjs webgpu
 * (only when named: Dawn's adapter, software ones included, as `--backend webgpu` takes it; its
 * adapter is printed and recorded; on Mesa's llvmpipe it is far slower than wasm, the figure that
 * matters is on a real GPU); PyTorch
 * (Debian's python3-torch on the system python with OpenBLAS, `apt-get install -y python3-torch
 * libopenblas0-pthread` when missing; see bench/torch-peer.ts) with torch and OpenBLAS threads
 * equal to the native kernel's threads, and with 1 thread: the faster of the two is the peer.
 * The BLAS is verified in the timed Python process (the library providing libtorch's sgemm_,
 * OpenBLAS's own config and thread count) and printed beside every figure; on the reference
 * BLAS no ratio is reported (PyTorch then runs one step, for the loss check only). Every
 * results.jsonl line records the peer's BLAS (`peerBlas`, `peer`) or why there is none.
 * Each figure is the median over the timed steps after warm-up; the clock stops after the
 * loss's `await data()`. Correctness: every route starts from the same weights and batch, so the
 * first step's loss must match PyTorch's (printed, and a mismatch over 1e-3 fails the run).
 * One more wasm + native step is profiled (every kernel timed, inside custom gradients and
 * recomputed layers too) and the top kernels by share of that step's wall time printed, naming
 * the next bottleneck. One JSON line per case is appended to bench/results.jsonl.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { describeNativeMatmul, installNativeMatmul, uninstallNativeMatmul } from '../src/native/matmul.js';
import { initBackend } from '../src/model/backend.js';
import { loadModel } from '../src/model/load.js';
import { loadAdapter, loadProjector, saveAdapter } from '../src/model/adapter.js';
import { writeTinyModel } from '../src/model/tiny.js';
import type { CausalLM } from '../src/model/decoder.js';
import { weightHeapBytes } from '../src/model/load.js';
import { planMemory } from '../src/train/memory.js';
import { Mulberry32 } from '../src/util/random.js';
import { describePeer, ensurePeer, peerRecord, peerRefusal, SYSTEM_PYTHON, TORCH_SCRIPT, type PeerConfig, type PeerSetup } from './torch-peer.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dataRoot = path.join(here, 'data', 'train-step');
const resultsFile = path.join(here, 'results.jsonl');

interface ModelSpec {
  name: 'tiny' | 'small' | 'qwen0.5b';
  /** A real model's shapes (make-tiny-model --preset); the fields below then describe it. */
  preset?: 'qwen2.5-0.5b';
  lora?: typeof LORA;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  seqLen: number;
  batch: number;
  videoTokens: number;
  featureDim: number;
}

const MODELS: Record<string, ModelSpec> = {
  tiny: { name: 'tiny', hiddenSize: 256, numLayers: 4, numHeads: 4, numKvHeads: 2, seqLen: 128, batch: 4, videoTokens: 32, featureDim: 128 },
  small: { name: 'small', hiddenSize: 512, numLayers: 4, numHeads: 8, numKvHeads: 4, seqLen: 256, batch: 4, videoTokens: 32, featureDim: 128 },
  'qwen0.5b': {
    name: 'qwen0.5b',
    preset: 'qwen2.5-0.5b',
    hiddenSize: 896,
    numLayers: 24,
    numHeads: 14,
    numKvHeads: 2,
    seqLen: 512,
    batch: 1,
    videoTokens: 32,
    featureDim: 128,
    lora: { rank: 16, alpha: 32, dropout: 0, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 },
  },
};
const LORA = { rank: 8, alpha: 16, dropout: 0, targetModules: ['q', 'k', 'v', 'o'], seed: 1 };
const loraOf = (spec: ModelSpec) => spec.lora ?? LORA;
const LR = 1e-3;

type Route = 'cpu' | 'wasm' | 'native' | 'webgpu' | 'torch' | 'torch1';
const ROUTE_LABEL: Record<Route, string> = { cpu: 'tfjs cpu', wasm: 'tfjs wasm', native: 'wasm + native', webgpu: 'tfjs webgpu', torch: 'PyTorch', torch1: 'PyTorch 1 thr' };

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv: string[]) {
  const opts = {
    models: ['tiny', 'small'],
    routes: ['cpu', 'wasm', 'native', 'torch'] as Route[],
    steps: undefined as number | undefined,
    warmup: undefined as number | undefined,
    threads: os.availableParallelism(),
    profile: true,
    routesGiven: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`train-step: ${a} needs a value`);
      return v;
    };
    const int = (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`train-step: ${a} expects a non-negative integer, found ${v}`);
      return n;
    };
    if (a === '--models') opts.models = next().split(',');
    else if (a === '--routes') {
      opts.routes = next().split(',') as Route[];
      opts.routesGiven = true;
    }
    else if (a === '--steps') opts.steps = int(next());
    else if (a === '--warmup') opts.warmup = int(next());
    else if (a === '--threads') opts.threads = Math.max(1, int(next()));
    else if (a === '--no-profile') opts.profile = false;
    else throw new Error(`train-step: unknown option ${a} (see the header of bench/train-step.ts)`);
  }
  for (const m of opts.models) if (!MODELS[m]) throw new Error(`train-step: unknown model ${m}; expected tiny, small or qwen0.5b`);
  for (const r of opts.routes) if (!ROUTE_LABEL[r] || r === 'torch1') throw new Error(`train-step: unknown route ${r}; expected cpu, wasm, native, webgpu or torch`);
  return opts;
}

/** Warm-up and timed steps per route: slow routes get fewer. */
function stepCounts(route: Route, model: ModelSpec, o: ReturnType<typeof parseArgs>) {
  if (model.preset) return { warmup: o.warmup ?? 1, steps: o.steps ?? 3 };
  const slow = route === 'cpu' || route === 'wasm';
  // tfjs cpu on the small model takes minutes per step and has no kernels to compile: its one
  // step is timed cold (the JIT warm-up is noise at that scale).
  // webgpu compiles its shaders during the first steps: two warm-ups, as the native route.
  const warmup = o.warmup ?? (route === 'cpu' && model.name === 'small' ? 0 : slow ? 1 : 2);
  const steps = o.steps ?? (route === 'cpu' ? (model.name === 'tiny' ? 2 : 1) : slow ? 3 : 10);
  return { warmup, steps };
}

// ---------------------------------------------------------------------------------------------
// Inputs: model folder, initial adapter, batch (made once, reused by every route and PyTorch)

interface Prepared {
  modelDir: string;
  adapterDir: string;
  batchFile: string;
  featuresFile: string;
  inputIds: Int32Array;
  labels: Int32Array;
  features: Float32Array;
  featureShape: [number, number, number];
}

async function prepare(spec: ModelSpec): Promise<Prepared> {
  const root = path.join(dataRoot, spec.name);
  const modelDir = path.join(root, 'model');
  const adapterDir = path.join(root, 'adapter');
  const batchFile = path.join(root, 'batch.json');
  const featuresFile = path.join(root, 'features.bin');
  const stamp = path.join(root, 'spec.json');
  const wanted = JSON.stringify({ spec, LORA: loraOf(spec), version: 1 });
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== wanted) {
    process.stdout.write(`preparing ${spec.name} model, adapter and batch in ${path.relative(process.cwd(), root)}\n`);
    mkdirSync(root, { recursive: true });
    await writeTinyModel(modelDir, spec.preset ? { preset: spec.preset, seed: 11 } : { hiddenSize: spec.hiddenSize, numLayers: spec.numLayers, numHeads: spec.numHeads, numKvHeads: spec.numKvHeads, seed: 11 });
    const model = await loadModel(modelDir);
    model.addLora(loraOf(spec));
    model.addProjector({ featureDim: spec.featureDim, seed: 2 });
    // LoRA B starts at zero (PEFT); give it small values so the LoRA path carries gradient
    // everywhere from the first step and the loss check covers it.
    const rand = new Mulberry32(5);
    tf.tidy(() => {
      for (const p of model.loraPairs()) p.bT.assign(tf.mul(tf.randomUniform(p.bT.shape, -1, 1, 'float32', Math.floor(rand.next() * 1e9)), 0.02));
    });
    await saveAdapter(model, adapterDir);
    const vid = model.videoTokenId;
    if (vid === undefined) throw new Error('train-step: the tiny model has no video placeholder token');
    const { batch: B, seqLen: T, videoTokens: N, featureDim: D } = spec;
    const inputIds = new Int32Array(B * T);
    const labels = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const video = t >= 2 && t < 2 + N;
        const id = video ? vid : 3 + Math.floor(rand.next() * 400);
        inputIds[b * T + t] = id;
        // Prompt (text before and the video) is not trained, the rest is.
        labels[b * T + t] = t < 2 + N + 8 ? -100 : id;
      }
    }
    const features = Float32Array.from({ length: B * N * D }, () => rand.next() * 2 - 1);
    writeFileSync(featuresFile, Buffer.from(features.buffer));
    writeFileSync(batchFile, JSON.stringify({ batch: B, seqLen: T, inputIds: Array.from(inputIds), labels: Array.from(labels), featureShape: [B, N, D], videoTokenId: vid }));
    model.dispose();
    writeFileSync(stamp, wanted);
  }
  const batch = JSON.parse(readFileSync(batchFile, 'utf8'));
  const buf = readFileSync(featuresFile);
  return {
    modelDir,
    adapterDir,
    batchFile,
    featuresFile,
    inputIds: Int32Array.from(batch.inputIds),
    labels: Int32Array.from(batch.labels),
    features: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
    featureShape: batch.featureShape,
  };
}

// ---------------------------------------------------------------------------------------------
// Routes

interface RouteResult {
  route: Route;
  ms: number[];
  losses: number[];
  skipped?: string;
  /** PyTorch routes: the configuration the timed process ran on, and why it is no peer (if so). */
  peer?: PeerConfig;
  refused?: string;
  detail?: Record<string, unknown>;
  kernels?: { name: string; ms: number; calls: number; share: number }[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function runTfjs(route: Route, spec: ModelSpec, data: Prepared, o: ReturnType<typeof parseArgs>): Promise<RouteResult> {
  let webgpu: Record<string, unknown> | null = null;
  if (route === 'webgpu') {
    try {
      const a = (await initBackend({ backend: 'webgpu', log: null })).webgpu!.adapter;
      webgpu = { adapter: [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' / '), dawnBackend: a.backend, software: a.software };
      process.stdout.write(`  webgpu adapter: ${webgpu.adapter} via ${a.backend}${a.software ? ' (software rasteriser)' : ''}\n`);
    } catch (err) {
      return { route, ms: [], losses: [], skipped: (err as Error).message };
    }
  } else if (route === 'cpu') {
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
  } else {
    await tf.setBackend('wasm');
  }
  await tf.ready();
  let detail: Record<string, unknown> = { backend: tf.getBackend(), ...(webgpu ?? {}) };
  if (route === 'native') {
    const info = installNativeMatmul({ threads: o.threads });
    if (!info.active) return { route, ms: [], losses: [], skipped: info.summary };
    detail = { ...detail, isa: info.isa, threads: info.threads };
  } else if (route !== 'webgpu') {
    uninstallNativeMatmul();
  }
  const model: CausalLM = await loadModel(data.modelDir);
  await loadAdapter(model, data.adapterDir);
  await loadProjector(model, data.adapterDir);
  const vars = model.trainableVariables();
  if (spec.preset) {
    // What `train.gradient_checkpointing: auto` picks for this shape (src/train/memory.ts).
    const plan = planMemory({
      config: model.config,
      trainableValues: vars.reduce((n, v) => n + v.size, 0),
      weightHeapBytes: weightHeapBytes(model.weights, model.config),
      mappedBytes: (model.weights.mappedFiles ?? []).reduce((n, f) => n + f.bytes, 0),
      maxTokens: spec.seqLen,
      batchSize: spec.batch,
      gradientCheckpointing: 'auto',
      prefetchBytes: 0,
      backend: tf.getBackend(),
    });
    model.gradientCheckpointing = plan.checkpointing;
    detail = { ...detail, weights: plan.mappedBytes > 0 ? 'mapped' : 'tensors', gradientCheckpointing: plan.checkpointing };
    process.stdout.write(`  ${spec.name}: weights ${plan.mappedBytes > 0 ? 'mapped' : 'as tensors'}, gradient checkpointing ${plan.checkpointing ? 'on' : 'off'} (${plan.checkpointingReason})\n`);
  }
  const optimizer = tf.train.adam(LR, 0.9, 0.999, 1e-8);
  const input = { inputIds: data.inputIds, batch: spec.batch, video: { features: { data: data.features, shape: data.featureShape } } };
  const lossFn = () => {
    const { sum, count } = model.computeLoss(input, data.labels, { training: true });
    return tf.div(sum, count) as tf.Scalar;
  };
  const step = () => {
    const { value, grads } = tf.variableGrads(lossFn, vars);
    optimizer.applyGradients(grads as unknown as Parameters<typeof optimizer.applyGradients>[0]);
    tf.dispose(Object.values(grads));
    return value;
  };
  const { warmup, steps } = stepCounts(route, spec, o);
  const ms: number[] = [];
  const losses: number[] = [];
  let tensorsAfterWarmup = -1;
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const value = step();
    const loss = (await value.data())[0];
    const elapsed = performance.now() - t0;
    value.dispose();
    losses.push(loss);
    if (i >= warmup) ms.push(elapsed);
    if (i === 0) tensorsAfterWarmup = tf.memory().numTensors;
    process.stdout.write(`  ${spec.name} ${ROUTE_LABEL[route]}: step ${i + 1}/${warmup + steps} ${elapsed.toFixed(0)} ms${i < warmup ? ' (warm-up)' : ''}\n`);
  }
  const leaked = tf.memory().numTensors - tensorsAfterWarmup;
  if (leaked !== 0) throw new Error(`train-step: ${route} leaked ${leaked} tensors over ${warmup + steps - 1} steps`);
  let kernels: RouteResult['kernels'];
  if (route === 'native' && o.profile) {
    const t0 = performance.now();
    const byName = await timeKernels(async () => {
      const v = step();
      await v.data();
      v.dispose();
    });
    const wall = performance.now() - t0;
    const total = [...byName.values()].reduce((s, e) => s + e.ms, 0);
    kernels = [...byName.entries()]
      .map(([name, e]) => ({ name, ms: e.ms, calls: e.calls, share: e.ms / wall }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 12);
    detail = { ...detail, profiledStepMs: wall, kernelMsTotal: total };
  }
  optimizer.dispose();
  model.dispose();
  if (route === 'native') detail = { ...detail, nativeCalls: describeNativeMatmul().stats.nativeCalls };
  // The process's peak: meaningful for the first route a process runs (bench one route per run to compare).
  detail = { ...detail, peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024) };
  return { route, ms, losses, detail, kernels };
}

/**
 * Times every kernel the backend runs during `fn`, by name: each registered kernel of the active
 * backend is wrapped in a clock for the call and restored after. Unlike tf.profile this sees
 * inside custom gradients and recomputed (checkpointed) layers. wasm kernels are synchronous, so
 * a kernel's time is its own; the step's time outside kernels is tfjs's bookkeeping and JS.
 */
async function timeKernels(fn: () => Promise<void>): Promise<Map<string, { ms: number; calls: number }>> {
  const backend = tf.getBackend();
  const configs = tf.getKernelsForBackend(backend);
  const byName = new Map<string, { ms: number; calls: number }>();
  for (const c of configs) {
    const e = { ms: 0, calls: 0 };
    byName.set(c.kernelName, e);
    const inner = c.kernelFunc;
    tf.unregisterKernel(c.kernelName, backend);
    tf.registerKernel({
      ...c,
      kernelFunc: ((args: Parameters<typeof inner>[0]) => {
        const t = performance.now();
        try {
          return inner(args);
        } finally {
          e.ms += performance.now() - t;
          e.calls++;
        }
      }) as typeof inner,
    });
  }
  try {
    await fn();
  } finally {
    for (const c of configs) {
      tf.unregisterKernel(c.kernelName, backend);
      tf.registerKernel(c);
    }
  }
  for (const [name, e] of byName) if (e.calls === 0) byName.delete(name);
  return byName;
}

function runTorch(spec: ModelSpec, data: Prepared, o: ReturnType<typeof parseArgs>, threadCount: number, setup: PeerSetup): RouteResult {
  const route: Route = threadCount === o.threads ? 'torch' : 'torch1';
  if ('missing' in setup) return { route, ms: [], losses: [], skipped: setup.missing };
  // A refused peer (reference BLAS) still runs one step: its first loss checks the other routes.
  const { warmup, steps } = setup.refused ? { warmup: 0, steps: 1 } : stepCounts('torch', spec, o);
  const specFile = path.join(dataRoot, spec.name, `torch-spec-${threadCount}.json`);
  writeFileSync(
    specFile,
    JSON.stringify({ model: data.modelDir, adapter: data.adapterDir, batch: data.batchFile, features: data.featuresFile, warmup, steps, threads: threadCount, lr: LR }),
  );
  const threads = String(threadCount);
  const env = { ...process.env, OPENBLAS_NUM_THREADS: threads, OMP_NUM_THREADS: threads, MKL_NUM_THREADS: threads };
  const out = execFileSync(SYSTEM_PYTHON, [TORCH_SCRIPT, specFile], { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  const line = out.trim().split('\n').pop()!;
  const r = JSON.parse(line) as { torch: string; threads: number; ms: number[]; losses: number[]; peer: PeerConfig; maxRssKB?: number };
  // The timed process's own BLAS decides, not the probe's.
  const refused = peerRefusal(r.peer) ?? setup.refused;
  process.stdout.write(`  ${spec.name} ${describePeer(r.peer)}: ${r.ms.length} steps, median ${median(r.ms).toFixed(0)} ms${refused ? ' (refused as a peer)' : ''}\n`);
  if (r.peer.torchThreads !== threadCount || (r.peer.blasThreads !== undefined && r.peer.blasThreads !== threadCount)) {
    process.stdout.write(`  warning: asked for ${threadCount} thread(s), the peer reports torch ${r.peer.torchThreads}, BLAS ${r.peer.blasThreads ?? '?'}\n`);
  }
  return { route, ms: r.ms, losses: r.losses, peer: r.peer, refused: refused ?? undefined, detail: { ...peerRecord(r.peer), ...(r.maxRssKB ? { peakRssMB: Math.round(r.maxRssKB / 1024) } : {}) } };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv.slice(2));
  await initBackend({ backend: 'wasm', log: null, nativeMatmul: false });
  const load = os.loadavg()[0];
  const loadNote = load > 0.5 * os.availableParallelism() ? `under load (1-min load average ${load.toFixed(2)} on ${os.availableParallelism()} cores)` : 'quiet';
  process.stdout.write(`train-step benchmark, ${o.threads} threads, machine ${loadNote}\n`);
  let setup: PeerSetup | undefined;
  for (const name of o.models) {
    const spec = MODELS[name];
    const data = await prepare(spec);
    const results: RouteResult[] = [];
    if (o.routes.includes('torch')) {
      setup ??= ensurePeer((line) => process.stdout.write(`${line}\n`));
      if ('peer' in setup) {
        process.stdout.write(`PyTorch peer: ${SYSTEM_PYTHON}, torch ${setup.peer.torch}, BLAS_INFO=${setup.peer.blasInfo}, sgemm_ from ${setup.peer.sgemmFrom}${setup.peer.blasConfig ? ` (${setup.peer.blasConfig})` : ''}\n`);
        if (setup.refused) process.stdout.write(`no ratio to PyTorch: ${setup.refused}\n`);
      }
      results.push(runTorch(spec, data, o, o.threads, setup));
      // Multithreaded OpenBLAS/OpenMP can collapse on a loaded machine; the peer is the faster.
      if (o.threads > 1 && !('missing' in setup)) results.push(runTorch(spec, data, o, 1, setup));
    }
    for (const route of ['cpu', 'wasm', 'native', 'webgpu'] as Route[]) {
      if (!o.routes.includes(route)) continue;
      // Without the addon a real-size model is float32 tensors on one thread: minutes per step.
      if (spec.preset && !o.routesGiven && (route === 'cpu' || route === 'wasm')) {
        results.push({ route, ms: [], losses: [], skipped: 'not run on a real-size model unless named in --routes' });
        continue;
      }
      results.push(await runTfjs(route, spec, data, o));
    }
    report(spec, results, o, loadNote);
  }
}

function report(spec: ModelSpec, results: RouteResult[], o: ReturnType<typeof parseArgs>, loadNote: string) {
  const tokens = spec.batch * spec.seqLen;
  const torchRuns = results.filter((r) => (r.route === 'torch' || r.route === 'torch1') && !r.skipped);
  // The peer is PyTorch's faster configuration (matched threads, or 1 thread when the machine is
  // too loaded for its thread pools), and never one on the reference BLAS.
  const torch = torchRuns.filter((r) => !r.refused).sort((a, b) => median(a.ms) - median(b.ms))[0];
  const torchMs = torch ? median(torch.ms) : NaN;
  // The first-loss check needs PyTorch's loss, refused or not.
  const lossRef = torch ?? torchRuns[0];
  const refused = torchRuns.find((r) => r.refused)?.refused ?? results.find((r) => r.skipped && r.route.startsWith('torch'))?.skipped;
  const peerLine = torch ? describePeer(torch.peer!) : `none (${torchRuns.length ? 'refused: reference BLAS, see above' : 'PyTorch not run'})`;
  process.stdout.write(`\n${spec.name}: hidden ${spec.hiddenSize}, ${spec.numLayers} layers, seq ${spec.seqLen}, batch ${spec.batch} (${tokens} tokens/step)\n`);
  process.stdout.write(`peer: ${peerLine}\n`);
  process.stdout.write(`${'route'.padEnd(16)}${'ms/step'.padStart(10)}${'tokens/s'.padStart(11)}${'x PyTorch'.padStart(11)}${'first loss'.padStart(12)}${'vs PyTorch'.padStart(12)}  configuration\n`);
  let mismatch = false;
  for (const r of results) {
    if (r.skipped) {
      process.stdout.write(`${ROUTE_LABEL[r.route].padEnd(16)} skipped: ${r.skipped}\n`);
      continue;
    }
    const ms = median(r.ms);
    const ratio = ms / torchMs;
    const lossDiff = lossRef ? Math.abs(r.losses[0] - lossRef.losses[0]) / Math.abs(lossRef.losses[0]) : NaN;
    if (r !== lossRef && lossDiff > 1e-3) mismatch = true;
    const isTorch = r.route === 'torch' || r.route === 'torch1';
    const config = isTorch
      ? `${describePeer(r.peer!)}${r.refused ? ' - not a peer (reference BLAS), 1 step for the loss check' : ''}`
      : `${String(r.detail?.backend ?? '')}${r.detail?.threads ? `, ${r.detail.threads} threads (${r.detail.isa})` : ', 1 thread'}${r.detail?.weights ? `, weights ${String(r.detail.weights)}, checkpointing ${r.detail.gradientCheckpointing ? 'on' : 'off'}` : ''}`;
    const rss = r.detail?.peakRssMB ? `; peak RSS ${String(r.detail.peakRssMB)} MB` : '';
    const x = r.refused ? 'refused' : torch ? `${ratio.toFixed(2)}x` : '-';
    process.stdout.write(
      `${ROUTE_LABEL[r.route].padEnd(16)}${ms.toFixed(0).padStart(10)}${(tokens / (ms / 1000)).toFixed(0).padStart(11)}${x.padStart(11)}${r.losses[0].toFixed(5).padStart(12)}${(r === lossRef ? (torch ? 'peer' : 'reference') : lossDiff.toExponential(1)).padStart(12)}  ${config}${rss}\n`,
    );
    const line = {
      bench: 'train-step',
      time: new Date().toISOString(),
      model: spec.name,
      shape: { hidden: spec.hiddenSize, layers: spec.numLayers, heads: spec.numHeads, kvHeads: spec.numKvHeads, seq: spec.seqLen, batch: spec.batch },
      route: ROUTE_LABEL[r.route],
      threads: r.route === 'webgpu' ? null : r.route === 'torch1' ? 1 : r.route === 'cpu' || r.route === 'wasm' ? 1 : o.threads,
      msPerStep: Number(ms.toFixed(2)),
      tokensPerSec: Number((tokens / (ms / 1000)).toFixed(1)),
      steps: r.ms.length,
      stepMs: r.ms.map((x) => Number(x.toFixed(1))),
      torchMsPerStep: torch ? Number(torchMs.toFixed(2)) : null,
      torchPeer: torch ? ROUTE_LABEL[torch.route] : null,
      ratioToTorch: torch && !r.refused ? Number(ratio.toFixed(3)) : null,
      // The peer this line's ratio is taken against (its BLAS verified in the timed process), or
      // why there is none.
      peerBlas: torch ? torch.peer!.blas : null,
      peer: torch ? { route: ROUTE_LABEL[torch.route], ...peerRecord(torch.peer!) } : null,
      peerRefused: torch ? null : (refused ?? 'PyTorch not run'),
      firstLoss: r.losses[0],
      firstLossRelDiffToTorch: lossRef ? lossDiff : null,
      machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}`,
      load: loadNote,
      node: process.version,
      tfjs: tf.version_core,
      ...(r.detail ?? {}),
      ...(r.kernels ? { topKernels: r.kernels.map((k) => ({ name: k.name, ms: Number(k.ms.toFixed(1)), calls: k.calls, share: Number(k.share.toFixed(3)) })) } : {}),
    };
    appendFileSync(resultsFile, `${JSON.stringify(line)}\n`);
  }
  const best = results.filter((r) => !r.route.startsWith('torch') && r.route !== 'webgpu' && !r.skipped).sort((a, b) => median(a.ms) - median(b.ms))[0];
  if (best && torch) {
    const ratio = median(best.ms) / torchMs;
    const native = results.find((r) => r.route === 'native' && !r.skipped);
    const verdict = (x: number) => (x > 1 ? `${x.toFixed(2)}x PyTorch's time: behind PyTorch` : `${x.toFixed(2)}x PyTorch's time: ahead of PyTorch`);
    process.stdout.write(
      spec.name === 'tiny'
        ? `target: wasm + native <= 1.5x PyTorch (${native ? (median(native.ms) / torchMs).toFixed(2) + 'x' : 'not run'}); best CPU route <= 6x (${ratio.toFixed(2)}x)\n`
        : '',
    );
    process.stdout.write(`best rpv route ${ROUTE_LABEL[best.route]}: ${verdict(ratio)}; peer ${peerLine}\n`);
  } else if (best) {
    process.stdout.write(`no ratio to PyTorch: ${refused ?? 'PyTorch not run'}\n`);
  }
  for (const r of results) {
    if (!r.kernels) continue;
    const wall = Number(r.detail?.profiledStepMs);
    const inKernels = Number(r.detail?.kernelMsTotal);
    process.stdout.write(`top kernels of one profiled ${ROUTE_LABEL[r.route]} step (${spec.name}): ${wall.toFixed(0)} ms, ${inKernels.toFixed(0)} ms of it in kernels\n`);
    for (const k of r.kernels) {
      process.stdout.write(`  ${k.name.padEnd(22)}${k.ms.toFixed(1).padStart(9)} ms ${(100 * k.share).toFixed(1).padStart(5)}%  ${String(k.calls).padStart(5)} calls\n`);
    }
    process.stdout.write(`  ${'(outside kernels)'.padEnd(22)}${(wall - inKernels).toFixed(1).padStart(9)} ms ${((100 * (wall - inKernels)) / wall).toFixed(1).padStart(5)}%\n`);
  }
  if (mismatch) {
    process.stdout.write('FAIL: a route\'s first loss differs from PyTorch\'s by more than 1e-3 (relative)\n');
    process.exitCode = 1;
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
