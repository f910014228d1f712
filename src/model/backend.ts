/**
 * Choosing and starting the tfjs backend.
 *
 * `auto` tries, in order: @tensorflow/tfjs-node-gpu (CUDA), WebGPU on a hardware adapter (Dawn:
 * Vulkan, Metal, D3D12 or OpenGL ES; src/model/webgpu.ts), @tensorflow/tfjs-node (libtensorflow
 * CPU), the wasm backend (XNNPACK, SIMD), and the pure-JS cpu backend. A software WebGPU adapter
 * (llvmpipe, SwiftShader) is used only when `webgpu` is asked for by name. The native and WebGPU
 * packages are optional: they are imported dynamically, never required, and a missing or broken
 * one falls back with one line on stderr. `routes` in the result says why each route was or was
 * not taken. Under wasm the native matmul kernel (src/native/matmul.ts), when built, replaces
 * BatchMatMul and _FusedMatMul.
 *
 * wasm's multithreaded build does not run under Node: tfjs-backend-wasm 4.22 reports no thread
 * support when IS_NODE, and forcing WASM_HAS_MULTITHREAD_SUPPORT makes Emscripten start its
 * pthreads from a `blob:` URL, which Node's worker_threads rejects (ERR_WORKER_PATH) — measured
 * here, so rpv uses the single-threaded SIMD build and gets its threads from the native kernel.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';
import type { WebgpuInfo, WebgpuProbe } from './webgpu.js';

/** Backend names `--backend` and `model.backend` accept. */
export const BACKEND_NAMES = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** One way of running tfjs, and why it was or was not taken. */
export interface BackendRoute {
  route: 'tfjs-node-gpu' | 'webgpu' | 'tfjs-node' | 'wasm' | 'cpu';
  taken: boolean;
  reason: string;
}

export interface InitBackendOptions {
  /** Which backend to use; `auto` picks the fastest that loads. Default `auto`. */
  backend?: BackendName;
  /**
   * Threads for the native kernels (default: RPV_MATMUL_THREADS, else the CPUs this process may
   * use); applied even when an earlier call started the backend.
   */
  threads?: number;
  /** Where fallback notes go (one line each); default stderr, null for silence. */
  log?: ((line: string) => void) | null;
  /** Skip installing the native matmul kernel under wasm (for comparisons). */
  nativeMatmul?: boolean;
}

/** Status of the native matmul kernel, as src/native/matmul.ts reports it. */
export interface NativeMatmulStatus {
  active: boolean;
  reason?: string;
  threads?: number;
  isa?: string;
}

export interface BackendInfo {
  /** tfjs backend name in use: `tensorflow`, `webgpu`, `wasm` or `cpu`. */
  backend: string;
  /** Which package provides it, e.g. `@tensorflow/tfjs-node-gpu`. */
  package: string;
  /** tfjs-core version. */
  tfjsVersion: string;
  /** Threads the backend's own kernels use (1 for wasm under Node and for cpu). */
  threads: number;
  /** wasm SIMD in use. */
  simd: boolean;
  /** A GPU is used (CUDA through tfjs-node-gpu, or a hardware WebGPU adapter). */
  gpu: boolean;
  /** The WebGPU adapter and device limits when the backend is `webgpu`, else null. */
  webgpu: WebgpuInfo | null;
  /** What each Dawn backend offered, when WebGPU was probed. */
  webgpuProbes?: WebgpuProbe[];
  /** Every route in `auto` order (or the one asked for), with why it was or was not taken. */
  routes: BackendRoute[];
  /** Native matmul kernel under wasm (inactive elsewhere). */
  nativeMatmul: NativeMatmulStatus;
  /** Lines explaining each fallback taken. */
  notes: string[];
}

type Tf = typeof tfc;

let current: BackendInfo | null = null;
let pending: Promise<BackendInfo> | null = null;

/** The tfjs-core module every part of rpv uses. */
export async function tfCore(): Promise<Tf> {
  const tf = await import('@tensorflow/tfjs-core');
  // tfjs-core's Node build registers no gradients, and its ESM register_all_gradients cannot be
  // imported by Node (extensionless imports). tfjs-layers' Node build bundles that module and
  // registers every gradient into tfjs-core's global registry when imported.
  await import('@tensorflow/tfjs-layers');
  return tf as unknown as Tf;
}

async function tryNode(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node', tf: Tf): Promise<string | null> {
  try {
    // A variable specifier keeps bundlers and TypeScript from resolving the optional package.
    const name: string = pkg;
    await import(name);
    const ok = await tf.setBackend('tensorflow');
    if (!ok) return `${pkg} loaded but its backend did not initialise`;
    await tf.ready();
    return null;
  } catch (err) {
    const msg = errorMessage(err).split('\n')[0];
    return /Cannot find (module|package)/.test(msg) ? `${pkg} is not installed` : `${pkg} failed to load: ${msg}`;
  }
}

function wasmDistDir(): string {
  const require = createRequire(import.meta.url);
  // The package's `main` lives in dist/, beside the .wasm files.
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep;
}

async function startWasm(tf: Tf): Promise<string | null> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(wasmDistDir());
    const ok = await tf.setBackend('wasm');
    if (!ok) return 'wasm backend did not initialise';
    await tf.ready();
    shareIdentityOnWasm(tf);
    return null;
  } catch (err) {
    return `wasm backend failed: ${errorMessage(err).split('\n')[0]}`;
  }
}

/**
 * tfjs-wasm's Identity kernel copies its input, and the engine runs it for every tensor a taped
 * op saves for the backward pass (`keep(clone(t))`): every activation of a training step existed
 * twice in the heap. Tensors are immutable and the wasm backend counts references (its Reshape
 * shares data the same way), so the replacement shares the data instead of copying it.
 */
export function shareIdentityOnWasm(tf: Tf): void {
  const original = tf.getKernel('Identity', 'wasm');
  if (!original || (original as { rpvShared?: boolean }).rpvShared) return;
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({
    kernelName: 'Identity',
    backendName: 'wasm',
    kernelFunc: ((args: { inputs: { x: tfc.TensorInfo }; backend: { incRef(dataId: object): void } }) => {
      const { x } = args.inputs;
      if (x.dtype === 'string') return (original.kernelFunc as (a: unknown) => tfc.TensorInfo)(args);
      args.backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    }) as unknown as tfc.KernelFunc,
    rpvShared: true,
  } as tfc.KernelConfig);
}

async function startCpu(tf: Tf): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new RpvError('backend: the cpu backend did not initialise');
  await tf.ready();
}

async function installNative(threads: number | undefined): Promise<NativeMatmulStatus> {
  try {
    // Owned by src/native; absent or unbuilt means plain wasm kernels.
    const spec: string = '../native/matmul.js';
    const mod = (await import(spec)) as {
      installNativeMatmul?: (o: { threads?: number }) => NativeMatmulStatus | Promise<NativeMatmulStatus>;
    };
    if (typeof mod.installNativeMatmul !== 'function') return { active: false, reason: 'src/native/matmul.ts has no installNativeMatmul' };
    return await mod.installNativeMatmul({ threads });
  } catch (err) {
    return { active: false, reason: `native matmul unavailable: ${errorMessage(err).split('\n')[0]}` };
  }
}

/**
 * Start the backend once per process (later calls return the same info unless a different
 * explicit backend is asked for). `threads` takes effect whoever started the backend: a later
 * call with threads (a trainer's `model.threads` after a `tfjs:` encoder or `loadModel` started
 * it) resizes the native kernels' pool and updates the info every caller holds.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  if (pending && current && (options.backend ?? 'auto') !== 'auto' && !matches(current, options.backend!)) {
    pending = null;
  }
  const started = pending !== null;
  if (!pending) pending = start(options).catch((err) => {
    pending = null;
    throw err;
  });
  const info = await pending;
  if (started && options.threads !== undefined) await applyThreads(info, options.threads);
  return info;
}

async function applyThreads(info: BackendInfo, threads: number): Promise<void> {
  checkThreads(threads);
  if (!info.nativeMatmul.active || info.nativeMatmul.threads === threads) return;
  const native = await installNative(threads);
  info.nativeMatmul = native;
  if (native.active && native.threads) info.threads = native.threads;
}

function checkThreads(threads: number | undefined): void {
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new RpvError(`backend: threads must be a positive integer, found ${threads}`);
  }
}

function matches(info: BackendInfo, want: BackendName): boolean {
  return want === 'auto' || info.backend === want;
}

async function start({ backend = 'auto', threads, log = (l) => process.stderr.write(`${l}\n`), nativeMatmul = true }: InitBackendOptions): Promise<BackendInfo> {
  if (!(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new RpvError(`backend: unknown backend ${JSON.stringify(backend)} (expected ${BACKEND_NAMES.slice(0, -1).join(', ')} or ${BACKEND_NAMES[BACKEND_NAMES.length - 1]})`);
  }
  checkThreads(threads);
  const tf = await tfCore();
  // Production mode: no debug checks, and no console banner from the cpu backend on first use.
  tf.env().set('PROD', true);
  // Every fallback is noted; all notes go out as one line once the backend is up.
  const notes: string[] = [];
  const note = (line: string) => notes.push(line);
  const routes: BackendRoute[] = [];
  const route = (r: BackendRoute['route'], taken: boolean, reason: string) => routes.push({ route: r, taken, reason });
  let pkg = '';
  let gpu = false;
  let webgpu: WebgpuInfo | null = null;
  let webgpuProbes: WebgpuProbe[] | undefined;
  const auto = backend === 'auto';
  let errGpu: string | null = 'not tried';
  if (auto || backend === 'tensorflow') {
    errGpu = await tryNode('@tensorflow/tfjs-node-gpu', tf);
    route('tfjs-node-gpu', errGpu === null, errGpu ?? 'loaded');
    if (errGpu === null) {
      pkg = '@tensorflow/tfjs-node-gpu';
      gpu = true;
    }
  }
  if (!pkg && (auto || backend === 'webgpu')) {
    const r = await tryWebgpu(tf, { allowSoftware: backend === 'webgpu' });
    webgpuProbes = r.probes;
    route('webgpu', r.info !== null, r.reason);
    if (r.info) {
      webgpu = r.info;
      pkg = '@tensorflow/tfjs-backend-webgpu';
      gpu = !r.info.adapter.software;
    } else if (backend === 'webgpu') {
      throw new RpvError(`backend: webgpu requested but unavailable: ${r.reason}`);
    }
  } else if (auto) route('webgpu', false, 'not tried: a GPU route is already in use');
  if (!pkg && (auto || backend === 'tensorflow')) {
    const errCpu = await tryNode('@tensorflow/tfjs-node', tf);
    route('tfjs-node', errCpu === null, errCpu ?? 'loaded');
    if (errCpu === null) pkg = '@tensorflow/tfjs-node';
    else if (backend === 'tensorflow') {
      throw new RpvError(`backend: tensorflow requested but unavailable: ${errGpu}; ${errCpu}`);
    } else if (errGpu && /not installed/.test(errGpu) && /not installed/.test(errCpu)) {
      note('@tensorflow/tfjs-node-gpu and @tensorflow/tfjs-node are not installed');
    } else {
      note(`${errGpu}; ${errCpu}`);
    }
    const w = routes.find((x) => x.route === 'webgpu');
    // The full reason is in `routes` (rpv env); the fallback line stays short.
    if (!pkg && w && !w.taken) note(`webgpu: ${/^(no adapter|only a software adapter)/.test(w.reason) ? 'no hardware adapter (`rpv env` says why)' : w.reason}`);
  } else if (auto) route('tfjs-node', false, 'not tried: a faster route is in use');
  if (!pkg && (auto || backend === 'wasm')) {
    const err = await startWasm(tf);
    route('wasm', err === null, err ?? 'started');
    if (err === null) pkg = '@tensorflow/tfjs-backend-wasm';
    else if (backend === 'wasm') throw new RpvError(`backend: ${err}`);
    else note(`${err} (the cpu backend is ~6x slower)`);
  } else if (auto) route('wasm', false, 'not tried: a faster route is in use');
  if (!pkg) {
    await startCpu(tf);
    pkg = '@tensorflow/tfjs-backend-cpu';
    route('cpu', true, 'started');
  } else if (auto) route('cpu', false, 'not tried: a faster route is in use');
  const name = tf.getBackend();
  let simd = false;
  let backendThreads = 1;
  let native: NativeMatmulStatus = { active: false, reason: `only used under wasm (backend is ${name})` };
  if (name === 'wasm') {
    simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    backendThreads = wasm.getThreadsCount();
    native = nativeMatmul ? await installNative(threads) : { active: false, reason: 'disabled by option' };
    if (!native.active && nativeMatmul) note(`native matmul kernel inactive (${native.reason ?? 'no reason given'}): matmuls run on single-threaded XNNPACK`);
  }
  if (webgpu?.adapter.software) note(`webgpu adapter ${describeAdapter(webgpu)} is a software rasteriser (${webgpu.adapter.softwareReason}): correct but far slower than wasm`);
  if (notes.length) {
    const kernel = name === 'wasm' ? (native.active ? `, native matmul ${native.isa ?? ''} x${native.threads ?? '?'} threads` : ', XNNPACK matmul') : '';
    log?.(`rpv: using the ${name} backend${name === 'wasm' ? (simd ? ' (SIMD' : ' (no SIMD') + kernel + ')' : ''}: ${notes.join('; ')}`);
  }
  current = {
    backend: name,
    package: pkg,
    tfjsVersion: tf.version_core,
    threads: native.active && native.threads ? native.threads : backendThreads,
    simd,
    gpu,
    webgpu,
    ...(webgpuProbes ? { webgpuProbes } : {}),
    nativeMatmul: native,
    routes,
    notes,
  };
  return current;
}

function describeAdapter(w: WebgpuInfo): string {
  const a = w.adapter;
  return `${[a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || a.description} via ${a.backend}`;
}

/**
 * Probe Dawn's backends and start the first hardware adapter (or, with allowSoftware, a software
 * one when there is no hardware). Never throws: the reason says what happened.
 */
async function tryWebgpu(tf: Tf, { allowSoftware }: { allowSoftware: boolean }): Promise<{ info: WebgpuInfo | null; reason: string; probes: WebgpuProbe[] }> {
  let mod: typeof import('./webgpu.js');
  try {
    mod = await import('./webgpu.js');
  } catch (err) {
    return { info: null, reason: `cannot load rpv's webgpu module: ${errorMessage(err).split('\n')[0]}`, probes: [] };
  }
  let probed: Awaited<ReturnType<typeof mod.probeWebgpu>>;
  try {
    probed = await mod.probeWebgpu({ hardwareOnly: !allowSoftware });
  } catch (err) {
    return { info: null, reason: errorMessage(err), probes: [] };
  }
  const { probes } = probed;
  if (probed.missing) return { info: null, reason: probed.missing, probes };
  const summary = probes.map((p) => mod.describeProbe(p)).join('; ');
  const chosen = probes.find((p) => p.adapter && !p.adapter.software) ?? (allowSoftware ? probes.find((p) => p.adapter) : undefined);
  if (!chosen) {
    const software = probes.some((p) => p.adapter?.software);
    return { info: null, reason: `${software ? 'only a software adapter, used only when asked for by name (--backend webgpu)' : 'no adapter'} (${summary})`, probes };
  }
  try {
    const info = await mod.startWebgpu(tf, chosen);
    return { info, reason: mod.describeProbe(chosen), probes };
  } catch (err) {
    return { info: null, reason: `${mod.describeProbe(chosen)} found but could not start: ${errorMessage(err).replace(/^backend: webgpu: /, '')}`, probes };
  }
}

/** What initBackend chose (null before it ran), for `rpv env` and run logs. */
export function describeBackend(): BackendInfo | null {
  return current;
}
