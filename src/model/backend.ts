/**
 * Choosing and starting the tfjs backend.
 *
 * `auto` tries, in order: @tensorflow/tfjs-node-gpu (CUDA), @tensorflow/tfjs-node (libtensorflow
 * CPU), the wasm backend (XNNPACK, SIMD), and the pure-JS cpu backend. The two native packages are
 * optional: they are imported dynamically, never required, and a missing or broken one falls
 * back with one line on stderr. Under wasm the native matmul kernel (src/native/matmul.ts), when
 * built, replaces BatchMatMul and _FusedMatMul.
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

export type BackendName = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface InitBackendOptions {
  /** Which backend to use; `auto` picks the fastest that loads. Default `auto`. */
  backend?: BackendName;
  /** Threads for the native matmul kernel (default: its own, the number of cores). */
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
  /** tfjs backend name in use: `tensorflow`, `wasm` or `cpu`. */
  backend: string;
  /** Which package provides it, e.g. `@tensorflow/tfjs-node-gpu`. */
  package: string;
  /** tfjs-core version. */
  tfjsVersion: string;
  /** Threads the backend's own kernels use (1 for wasm under Node and for cpu). */
  threads: number;
  /** wasm SIMD in use. */
  simd: boolean;
  /** A CUDA GPU is used. */
  gpu: boolean;
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
 * explicit backend is asked for).
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  if (pending && current && (options.backend ?? 'auto') !== 'auto' && !matches(current, options.backend!)) {
    pending = null;
  }
  if (!pending) pending = start(options).catch((err) => {
    pending = null;
    throw err;
  });
  return pending;
}

function matches(info: BackendInfo, want: BackendName): boolean {
  return want === 'auto' || info.backend === want;
}

async function start({ backend = 'auto', threads, log = (l) => process.stderr.write(`${l}\n`), nativeMatmul = true }: InitBackendOptions): Promise<BackendInfo> {
  if (!['auto', 'tensorflow', 'wasm', 'cpu'].includes(backend)) {
    throw new RpvError(`backend: unknown backend ${JSON.stringify(backend)} (expected auto, tensorflow, wasm or cpu)`);
  }
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new RpvError(`backend: threads must be a positive integer, found ${threads}`);
  }
  const tf = await tfCore();
  // Production mode: no debug checks, and no console banner from the cpu backend on first use.
  tf.env().set('PROD', true);
  // Every fallback is noted; all notes go out as one line once the backend is up.
  const notes: string[] = [];
  const note = (line: string) => notes.push(line);
  let pkg = '';
  let gpu = false;
  if (backend === 'auto' || backend === 'tensorflow') {
    const errGpu = await tryNode('@tensorflow/tfjs-node-gpu', tf);
    if (errGpu === null) {
      pkg = '@tensorflow/tfjs-node-gpu';
      gpu = true;
    } else {
      const errCpu = await tryNode('@tensorflow/tfjs-node', tf);
      if (errCpu === null) pkg = '@tensorflow/tfjs-node';
      else if (backend === 'tensorflow') {
        throw new RpvError(`backend: tensorflow requested but unavailable: ${errGpu}; ${errCpu}`);
      } else if (/not installed/.test(errGpu) && /not installed/.test(errCpu)) {
        note('@tensorflow/tfjs-node-gpu and @tensorflow/tfjs-node are not installed');
      } else {
        note(`${errGpu}; ${errCpu}`);
      }
    }
  }
  if (!pkg && (backend === 'auto' || backend === 'wasm')) {
    const err = await startWasm(tf);
    if (err === null) pkg = '@tensorflow/tfjs-backend-wasm';
    else if (backend === 'wasm') throw new RpvError(`backend: ${err}`);
    else note(`${err} (the cpu backend is ~6x slower)`);
  }
  if (!pkg) {
    await startCpu(tf);
    pkg = '@tensorflow/tfjs-backend-cpu';
  }
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
    nativeMatmul: native,
    notes,
  };
  return current;
}

/** What initBackend chose (null before it ran), for `rpv env` and run logs. */
export function describeBackend(): BackendInfo | null {
  return current;
}
