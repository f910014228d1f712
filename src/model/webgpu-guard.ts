/**
 * Kernels of tfjs's webgpu backend made safe on any adapter.
 *
 * Dawn validates every pipeline, bind group and command buffer; an invalid one is dropped with an
 * error event, and tfjs-backend-webgpu does not listen: the op's output buffer keeps whatever it
 * held (a pooled buffer's old values), so training goes on with wrong numbers. Measured on Mesa's
 * llvmpipe (16 storage buffers per shader stage): `addN` of 40 scalars returned the previous op's
 * result instead of 820. Here:
 *
 *   - `AddN` with more inputs than a shader may bind (maxStorageBuffersPerShaderStage - 1, one is
 *     the output) is summed in chunks that fit, then the partial sums. tfjs's own `Concat` (and
 *     `Pack`, which uses it) already splits by the same limit.
 *   - Every program is checked before it is recorded: its storage buffers against
 *     maxStorageBuffersPerShaderStage, each buffer's size against maxStorageBufferBindingSize and
 *     maxBufferSize. A program over a limit throws at once, naming the kernel.
 *   - Every kernel runs inside Dawn error scopes (validation, out-of-memory). An error Dawn reports
 *     there, or through `uncapturederror` (errors at command submission), or a lost device, is
 *     thrown by the next read (`await tensor.data()`), naming the kernel that caused it; the read
 *     never returns numbers computed after an error.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';

/** The parts of a Dawn GPUDevice used here. */
export interface GpuDeviceLike {
  limits: Record<string, number>;
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
  addEventListener(type: 'uncapturederror', listener: (event: { error: { message: string } }) => void): void;
  lost: Promise<{ reason: string; message: string }>;
}

interface TensorInfoLike {
  dataId: object;
  shape: number[];
  dtype: string;
}

/** The parts of tfjs's WebGPUBackend used here. */
interface WebgpuBackendLike {
  runWebGPUProgram(program: { constructor: { name: string }; outputShape: number[] }, inputs: TensorInfoLike[], outputDtype: string, uniforms?: unknown, output?: TensorInfoLike): TensorInfoLike;
  read(dataId: object): Promise<unknown>;
  disposeData(dataId: object, force?: boolean): boolean;
}

type KernelArgs = { inputs: unknown; backend: unknown; attrs?: unknown };
type KernelFn = (args: KernelArgs) => TensorInfoLike | TensorInfoLike[];

export interface WebgpuGuardOptions {
  /** Split AddN to fit the storage-buffer limit (default true; off only to show what happens without). */
  splitAddN?: boolean;
  /** Check each program against the device's limits before recording it (default true). */
  precheck?: boolean;
}

export interface WebgpuGuardStats {
  /** AddN calls that were split. */
  addNSplits: number;
  /** Errors Dawn reported (scoped, uncaptured, device lost) since the process started. */
  dawnErrors: number;
}

interface DawnError {
  seq: number;
  kernel: string;
  message: string;
}

const options: Required<WebgpuGuardOptions> = { splitAddN: true, precheck: true };
const stats: WebgpuGuardStats = { addNSplits: 0, dawnErrors: 0 };
let device: GpuDeviceLike | null = null;
let seq = 0;
/** Kernel running now (outermost), for errors raised during it. */
let currentKernel: string | null = null;
let lastKernel = '(before any kernel)';
const pending = new Set<Promise<void>>();
let firstError: DawnError | null = null;
let installedOn: object | null = null;

/** Change the guard's options (tests and diagnosis). */
export function configureWebgpuGuard(next: WebgpuGuardOptions): void {
  Object.assign(options, next);
}

export function webgpuGuardStats(): WebgpuGuardStats {
  return { ...stats };
}

/** A root cause was reported; Dawn's follow-up errors ("... is invalid due to a previous error") add nothing. */
let rootSeen = false;

function record(e: DawnError): void {
  stats.dawnErrors += 1;
  const followUp = /due to a previous error/.test(e.message);
  if (followUp && rootSeen) return;
  if (!followUp) rootSeen = true;
  if (!firstError || e.seq < firstError.seq) firstError = e;
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.trim();
}

/** Throw the first Dawn error seen since the last check (once), after every pending scope has answered. */
export async function checkWebgpuErrors(): Promise<void> {
  while (pending.size) await Promise.all([...pending]);
  const e = firstError;
  if (!e) return;
  firstError = null;
  throw new RpvError(`webgpu: kernel ${e.kernel}: Dawn rejected it: ${firstLine(e.message)} (its output and everything computed from it are invalid)`);
}

function bytesOf(t: TensorInfoLike): number {
  let n = 1;
  for (const d of t.shape) n *= d;
  return n * (t.dtype === 'complex64' ? 8 : 4);
}

function precheck(kernel: string, program: { constructor: { name: string }; outputShape: number[] }, inputs: TensorInfoLike[], outputDtype: string): void {
  const limits = device!.limits;
  const buffers = inputs.length + 1;
  const maxBuffers = limits.maxStorageBuffersPerShaderStage!;
  if (buffers > maxBuffers) {
    throw new RpvError(
      `webgpu: kernel ${kernel}: ${program.constructor.name} binds ${buffers} storage buffers (${inputs.length} inputs + the output); this adapter allows ${maxBuffers} per shader stage (maxStorageBuffersPerShaderStage)`,
    );
  }
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize!, limits.maxBufferSize!);
  const all = [...inputs.map((t, i) => ({ t, what: `input ${i}` })), { t: { dataId: {}, shape: program.outputShape, dtype: outputDtype }, what: 'the output' }];
  for (const { t, what } of all) {
    const bytes = bytesOf(t);
    if (bytes > maxBinding) {
      const which = limits.maxStorageBufferBindingSize! <= limits.maxBufferSize! ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
      throw new RpvError(`webgpu: kernel ${kernel}: ${what} [${t.shape.join(', ')}] is ${bytes} bytes; this adapter binds at most ${maxBinding} bytes per buffer (${which})`);
    }
  }
}

function scoped(kernel: string, fn: KernelFn): KernelFn {
  return (args) => {
    const outer = currentKernel === null;
    if (!outer) return fn(args);
    const d = device!;
    const mySeq = ++seq;
    currentKernel = kernel;
    lastKernel = kernel;
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    try {
      return fn(args);
    } finally {
      const scopes = [d.popErrorScope(), d.popErrorScope()];
      currentKernel = null;
      const p: Promise<void> = Promise.all(scopes).then(
        (errs) => {
          for (const err of errs) if (err) record({ seq: mySeq, kernel, message: err.message });
        },
        (err: unknown) => record({ seq: mySeq, kernel, message: `error scope failed: ${String(err)}` }),
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
  };
}

/** AddN over chunks that fit one shader, then over the partial sums. */
function splitAddN(original: KernelFn): KernelFn {
  return (args) => {
    const max = device!.limits.maxStorageBuffersPerShaderStage! - 1;
    let inputs = args.inputs as TensorInfoLike[];
    if (!options.splitAddN || inputs.length <= max) return original(args);
    stats.addNSplits += 1;
    const backend = args.backend as WebgpuBackendLike;
    const partials: TensorInfoLike[] = [];
    while (inputs.length > max) {
      const next: TensorInfoLike[] = [];
      for (let i = 0; i < inputs.length; i += max) {
        const chunk = inputs.slice(i, i + max);
        if (chunk.length === 1) {
          next.push(chunk[0]!);
          continue;
        }
        const sum = original({ ...args, inputs: chunk }) as TensorInfoLike;
        partials.push(sum);
        next.push(sum);
      }
      inputs = next;
    }
    const out = original({ ...args, inputs }) as TensorInfoLike;
    for (const t of partials) backend.disposeData(t.dataId);
    return out;
  };
}

/**
 * Wrap every kernel registered for `webgpu` and the backend's program runner and reads. Called once
 * per backend instance by startWebgpu.
 */
export function installWebgpuGuard(tf: typeof tfc, backend: tfc.KernelBackend, gpuDevice: GpuDeviceLike): void {
  if (installedOn === backend) return;
  device = gpuDevice;
  gpuDevice.addEventListener('uncapturederror', (event) => record({ seq: ++seq, kernel: currentKernel ?? `${lastKernel} or a later one (at command submission)`, message: event.error.message }));
  void gpuDevice.lost.then((info) => {
    if (info.reason !== 'destroyed') record({ seq: ++seq, kernel: currentKernel ?? lastKernel, message: `the device was lost (${info.reason}): ${info.message}` });
  });
  const b = backend as unknown as WebgpuBackendLike;
  const run = b.runWebGPUProgram.bind(b);
  b.runWebGPUProgram = (program, inputs, outputDtype, uniforms, output) => {
    if (options.precheck) precheck(currentKernel ?? program.constructor.name, program, inputs, outputDtype);
    return run(program, inputs, outputDtype, uniforms, output);
  };
  const read = b.read.bind(b);
  b.read = async (dataId) => {
    const values = await read(dataId);
    await checkWebgpuErrors();
    return values;
  };
  if (installedOn === null) {
    for (const config of tf.getKernelsForBackend('webgpu')) {
      const original = config.kernelFunc as unknown as KernelFn;
      const fn = config.kernelName === 'AddN' ? splitAddN(original) : original;
      tf.unregisterKernel(config.kernelName, 'webgpu');
      tf.registerKernel({ ...config, kernelFunc: scoped(config.kernelName, fn) as unknown as tfc.KernelFunc });
    }
  }
  installedOn = backend;
}
