/**
 * The WebGPU backend: tfjs-backend-webgpu on Google's Dawn for Node (npm `webgpu`), i.e. Vulkan on
 * Linux, Metal on macOS, D3D12 on Windows, and OpenGL ES through EGL (on Linux also Mesa's
 * software rasteriser llvmpipe, which is how CI runs it). No CUDA toolkit is involved.
 *
 * Both npm packages are optional dependencies: without them the route reports "not installed".
 *
 * Discovery runs in short child processes, one per Dawn backend: a broken driver cannot take rpv
 * down, Dawn's own warnings ("Couldn't load Vulkan: libvulkan.so.1 ...") become the reason `rpv env`
 * prints, and nothing stays loaded when the route is not taken. An adapter whose info names a
 * software rasteriser (llvmpipe, lavapipe, SwiftShader, ...) or that says it is a fallback adapter
 * is software: `auto` never takes it, `--backend webgpu` does when no hardware adapter exists.
 *
 * The chosen adapter is then opened in this process with every limit it supports (tfjs itself asks
 * for six, leaving e.g. 8 storage buffers per shader stage), tfjs's WebGPUBackend is built on that
 * device, and src/model/webgpu-guard.ts wraps its kernels (inputs split to fit the limits, Dawn
 * errors turned into errors naming the kernel).
 *
 * Reads are asynchronous only: tfjs-backend-webgpu's `dataSync` draws through an OffscreenCanvas,
 * which Node lacks, so every read on this path is `await tensor.data()`.
 *
 * Environment: RPV_WEBGPU_BACKEND=vulkan|opengles|metal|d3d12 tries that Dawn backend only;
 * EGL_PLATFORM defaults to `surfaceless` (no display is needed for compute).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError, errorMessage } from '../util/errors.js';
import { installWebgpuGuard, type GpuDeviceLike } from './webgpu-guard.js';

export type DawnBackend = 'vulkan' | 'opengles' | 'metal' | 'd3d12';

/** One adapter Dawn offered. */
export interface WebgpuAdapterInfo {
  /** Dawn backend it was found through. */
  backend: DawnBackend;
  /** `core` WebGPU, or `compatibility` (what OpenGL ES can offer). */
  featureLevel: 'core' | 'compatibility';
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** A CPU rasteriser rather than a GPU. */
  software: boolean;
  /** What says so (e.g. `device "llvmpipe-llvm-15..."`); absent for hardware. */
  softwareReason?: string;
  /** The limits rpv's kernels depend on, as the adapter reports them. */
  limits: {
    maxStorageBuffersPerShaderStage: number;
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
  };
}

/** What one Dawn backend gave when probed. */
export interface WebgpuProbe {
  backend: DawnBackend;
  /** The adapter, or null with the reason in `reason`. */
  adapter: WebgpuAdapterInfo | null;
  /** Why no adapter (or why the probe was skipped). */
  reason?: string;
}

/** The WebGPU route in use. */
export interface WebgpuInfo {
  adapter: WebgpuAdapterInfo;
  /** Versions of the npm packages, e.g. `webgpu 0.6.2, @tensorflow/tfjs-backend-webgpu 4.22.0`. */
  packages: string;
  /** Limits the device was created with (the adapter's). */
  deviceLimits: WebgpuAdapterInfo['limits'];
}

const SOFTWARE = /llvmpipe|lavapipe|softpipe|swiftshader|swrast|software ?rasteri[sz]er|microsoft basic render/i;
const LIMIT_NAMES = ['maxStorageBuffersPerShaderStage', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup'] as const;
const PROBE_TIMEOUT_MS = 30_000;

/** Dawn backends to try on this platform, in order of preference. */
export function dawnBackends(): DawnBackend[] {
  const only = process.env.RPV_WEBGPU_BACKEND;
  if (only) {
    if (!['vulkan', 'opengles', 'metal', 'd3d12'].includes(only)) {
      throw new RpvError(`backend: RPV_WEBGPU_BACKEND must be vulkan, opengles, metal or d3d12, found ${JSON.stringify(only)}`);
    }
    return [only as DawnBackend];
  }
  if (process.platform === 'darwin') return ['metal'];
  if (process.platform === 'win32') return ['d3d12', 'vulkan'];
  return ['vulkan', 'opengles'];
}

function featureLevelOf(backend: DawnBackend): 'core' | 'compatibility' {
  return backend === 'opengles' ? 'compatibility' : 'core';
}

/** Is this adapter a CPU rasteriser? Returns what says so, or null for a GPU. */
export function softwareReason(info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean }): string | null {
  if (info.isFallbackAdapter) return 'Dawn marks it as a fallback adapter';
  for (const field of ['vendor', 'architecture', 'device', 'description'] as const) {
    if (SOFTWARE.test(info[field])) return `${field} ${JSON.stringify(info[field])}`;
  }
  return null;
}

function requireFrom(): NodeRequire {
  return createRequire(import.meta.url);
}

/** Paths of the two optional packages, or why they are missing. */
function locatePackages(): { webgpu: string; tfjsWebgpu: string; versions: string } | { missing: string } {
  const require = requireFrom();
  const missing: string[] = [];
  let webgpu = '';
  let tfjsWebgpu = '';
  const versions: string[] = [];
  for (const name of ['webgpu', '@tensorflow/tfjs-backend-webgpu']) {
    try {
      const main = require.resolve(name);
      if (name === 'webgpu') webgpu = main;
      else tfjsWebgpu = main;
      const pkg = require(`${name}/package.json`) as { version: string };
      versions.push(`${name} ${pkg.version}`);
    } catch {
      missing.push(name);
    }
  }
  if (missing.length) {
    return { missing: `the optional npm package${missing.length > 1 ? 's' : ''} ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed` };
  }
  return { webgpu, tfjsWebgpu, versions: versions.join(', ') };
}

/** Environment for Dawn: EGL without a display unless the user chose a platform. */
function dawnEnv(): NodeJS.ProcessEnv {
  return process.platform === 'linux' && !process.env.EGL_PLATFORM ? { ...process.env, EGL_PLATFORM: 'surfaceless' } : process.env;
}

/**
 * The child's program: open one Dawn backend, ask for its adapter, print what it is as JSON.
 * Dawn writes its warnings to stderr, which the parent keeps as the reason when no adapter comes.
 */
const PROBE_SCRIPT = `
const [url, backend, featureLevel] = process.argv.slice(-3);
const { create } = await import(url);
const gpu = create(['backend=' + backend]);
const a = await gpu.requestAdapter({ powerPreference: 'high-performance', featureLevel });
if (!a) { process.stdout.write('null'); } else {
  const i = a.info ?? {};
  const limits = {};
  for (const k of ${JSON.stringify(LIMIT_NAMES)}) limits[k] = a.limits[k];
  process.stdout.write(JSON.stringify({ vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '', description: i.description ?? '',
    isFallbackAdapter: Boolean(i.isFallbackAdapter ?? a.isFallbackAdapter), limits }));
}
`;

/**
 * Why Dawn cannot open Vulkan here (Linux): its loader libvulkan.so.1 is nowhere the dynamic linker
 * looks (LD_LIBRARY_PATH, /etc/ld.so.cache, the default folders). Null when it may be there. Saves
 * auto a child process on machines without Vulkan.
 */
function vulkanLoaderMissing(): string | null {
  if (process.platform !== 'linux' || process.env.RPV_WEBGPU_BACKEND) return null;
  const name = 'libvulkan.so.1';
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/lib', '/usr/lib', '/lib64', '/usr/lib64', `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`];
  if (dirs.some((d) => existsSync(path.join(d, name)))) return null;
  try {
    if (readFileSync('/etc/ld.so.cache').includes(name)) return null;
  } catch {
    return null;
  }
  return `not probed for auto: ${name} (the Vulkan loader, Debian/Ubuntu package libvulkan1) is not installed`;
}

/** Why the OpenGL ES probe can only find a software rasteriser here (Linux), or null to probe it. */
function eglOnlySoftware(): string | null {
  if (process.platform !== 'linux' || process.env.RPV_WEBGPU_BACKEND) return null;
  const renderNodes = existsSync('/dev/dri') && readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  if (renderNodes) return null;
  const vendorDirs = ['/usr/share/glvnd/egl_vendor.d', '/etc/glvnd/egl_vendor.d'];
  const vendors = vendorDirs.flatMap((d) => (existsSync(d) ? readdirSync(d) : []));
  if (vendors.some((f) => !/mesa/i.test(f))) return null;
  return 'not probed for auto: no /dev/dri render node and no EGL vendor but Mesa, so only a software rasteriser could answer (--backend webgpu tries it)';
}

function runProbe(webgpuMain: string, backend: DawnBackend): Promise<WebgpuProbe> {
  const args = ['--input-type=module', '-e', PROBE_SCRIPT, pathToFileURL(webgpuMain).href, backend, featureLevelOf(backend)];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: dawnEnv(), timeout: PROBE_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const dawnSays = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('at ') && !l.startsWith('- While'))
        .map((l) => l.replace(/^Warning: /, ''))
        .slice(0, 3)
        .join(' / ');
      if (err) {
        const why = err.killed ? `no answer within ${PROBE_TIMEOUT_MS / 1000} s` : `the probe failed (${err.signal ?? `exit ${err.code}`})`;
        resolve({ backend, adapter: null, reason: `${why}${dawnSays ? `: ${dawnSays}` : ''}` });
        return;
      }
      let raw: Omit<WebgpuAdapterInfo, 'backend' | 'featureLevel' | 'software'> | null;
      try {
        raw = JSON.parse(stdout) as typeof raw;
      } catch {
        resolve({ backend, adapter: null, reason: `the probe printed no adapter description${dawnSays ? `: ${dawnSays}` : ''}` });
        return;
      }
      if (!raw) {
        resolve({ backend, adapter: null, reason: `Dawn found no adapter${dawnSays ? `: ${dawnSays}` : ''}` });
        return;
      }
      const soft = softwareReason(raw);
      resolve({ backend, adapter: { backend, featureLevel: featureLevelOf(backend), ...raw, software: soft !== null, ...(soft ? { softwareReason: soft } : {}) } });
    });
  });
}

/**
 * Ask each Dawn backend of this platform for its adapter (in child processes, in parallel). With
 * `hardwareOnly`, backends that could only offer a software rasteriser are not started.
 */
export async function probeWebgpu({ hardwareOnly = false }: { hardwareOnly?: boolean } = {}): Promise<{ probes: WebgpuProbe[]; missing?: string }> {
  const found = locatePackages();
  if ('missing' in found) return { probes: [], missing: found.missing };
  const probes = await Promise.all(
    dawnBackends().map((backend) => {
      const skip = !hardwareOnly ? null : backend === 'opengles' ? eglOnlySoftware() : backend === 'vulkan' ? vulkanLoaderMissing() : null;
      return skip ? Promise.resolve<WebgpuProbe>({ backend, adapter: null, reason: skip }) : runProbe(found.webgpu, backend);
    }),
  );
  return { probes };
}

/** One line per probe, for notes and `rpv env`. */
export function describeProbe(p: WebgpuProbe): string {
  if (!p.adapter) return `${p.backend}: ${p.reason ?? 'no adapter'}`;
  const a = p.adapter;
  const name = [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || a.description || 'unnamed adapter';
  return `${p.backend}: ${name}${a.software ? ` (software: ${a.softwareReason})` : ' (hardware)'}`;
}

interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  limits: Record<string, number>;
  requestDevice(descriptor: { requiredLimits: Record<string, number> }): Promise<GpuDeviceLike>;
}

interface DawnModule {
  create(flags: string[]): { requestAdapter(options: object): Promise<GpuAdapterLike | null> };
  globals: Record<string, unknown>;
}

interface TfjsWebgpuModule {
  WebGPUBackend: new (device: unknown, adapterInfo?: unknown) => tfc.KernelBackend;
}

let started: WebgpuInfo | null = null;
/**
 * Dawn's instance and adapter of the running backend. They must stay reachable: once the instance
 * object is garbage-collected Dawn tears it down under the live device, and the process aborts
 * (std::system_error) at a later op.
 */
const alive: unknown[] = [];

/**
 * Open `probe`'s adapter in this process and make tfjs's `webgpu` backend run on it. Throws an
 * RpvError saying what failed.
 */
export async function startWebgpu(tf: typeof tfc, probe: WebgpuProbe): Promise<WebgpuInfo> {
  if (started && started.adapter.backend === probe.backend && tf.findBackend('webgpu')) {
    if (!(await tf.setBackend('webgpu'))) throw new RpvError('backend: webgpu: the backend did not initialise');
    return started;
  }
  const found = locatePackages();
  if ('missing' in found) throw new RpvError(`backend: webgpu: ${found.missing}`);
  if (!probe.adapter) throw new RpvError(`backend: webgpu: ${describeProbe(probe)}`);
  if (process.platform === 'linux' && !process.env.EGL_PLATFORM) process.env.EGL_PLATFORM = 'surfaceless';
  const dawn = (await import(pathToFileURL(found.webgpu).href)) as DawnModule;
  // tfjs-backend-webgpu reads GPUBufferUsage, GPUMapMode, GPUBuffer... as globals.
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  const gpu = dawn.create([`backend=${probe.backend}`]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance', featureLevel: probe.adapter.featureLevel });
  if (!adapter) throw new RpvError(`backend: webgpu: Dawn's ${probe.backend} backend offered an adapter to the probe but not to this process`);
  // Every limit the adapter has: tfjs asks for six, and WebGPU's defaults (8 storage buffers per
  // shader stage, 4 in compatibility mode) are far below what GPUs offer.
  const requiredLimits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = adapter.limits[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  let device: GpuDeviceLike;
  try {
    device = await adapter.requestDevice({ requiredLimits });
  } catch (err) {
    throw new RpvError(`backend: webgpu: ${probe.backend} adapter refused a device with its own limits: ${errorMessage(err)}`);
  }
  const tfjsWebgpu = (await import(pathToFileURL(found.tfjsWebgpu).href)) as TfjsWebgpuModule;
  // The package registers its own factory only when navigator.gpu exists at import; it would ask
  // for a core adapter with few limits. rpv registers the backend built on its device instead.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  const g = globalThis as { navigator?: { gpu?: unknown } };
  const hadNavigator = 'navigator' in globalThis;
  const previousGpu = g.navigator?.gpu;
  // WebGPUBackend's constructor checks navigator.gpu; it is removed again at once, so nothing keeps
  // Dawn's instance reachable from a global.
  if (!hadNavigator) (globalThis as Record<string, unknown>).navigator = { gpu };
  else Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  let backend: tfc.KernelBackend;
  try {
    backend = new tfjsWebgpu.WebGPUBackend(device, adapter.info);
  } finally {
    if (!hadNavigator) delete (globalThis as Record<string, unknown>).navigator;
    else if (previousGpu === undefined) delete (g.navigator as Record<string, unknown>).gpu;
    else Object.defineProperty(g.navigator, 'gpu', { value: previousGpu, configurable: true, writable: true });
  }
  alive.push(gpu, adapter, device);
  tf.registerBackend('webgpu', () => backend);
  installWebgpuGuard(tf, backend, device);
  if (!(await tf.setBackend('webgpu'))) throw new RpvError('backend: webgpu: the backend did not initialise');
  await tf.ready();
  const deviceLimits = Object.fromEntries(LIMIT_NAMES.map((k) => [k, device.limits[k] as number])) as WebgpuInfo['deviceLimits'];
  started = { adapter: probe.adapter, packages: found.versions, deviceLimits };
  return started;
}

/** The WebGPU route in use, or null. */
export function describeWebgpu(): WebgpuInfo | null {
  return started;
}
