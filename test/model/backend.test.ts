import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/index.js';
import { describeBackend } from '../../src/model/backend.js';
import { softwareReason } from '../../src/model/webgpu.js';

describe('backend selection', () => {
  it('an unavailable tensorflow backend is a clear error; auto falls back to wasm with one line', async () => {
    await expect(initBackend({ backend: 'tensorflow', log: null })).rejects.toThrow(
      'backend: tensorflow requested but unavailable: @tensorflow/tfjs-node-gpu is not installed; @tensorflow/tfjs-node is not installed',
    );
    const lines: string[] = [];
    const info = await initBackend({ backend: 'auto', log: (l) => lines.push(l) });
    expect(info.backend).toBe('wasm');
    expect(info.simd).toBe(true);
    expect(info.gpu).toBe(false);
    expect(info.tfjsVersion).toMatch(/^4\./);
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/^rpv: using the wasm backend \(SIMD, .*\): @tensorflow\/tfjs-node-gpu and @tensorflow\/tfjs-node are not installed/);
    expect(describeBackend()).toEqual(info);
    // Every route in auto's order, each with why it was or was not taken.
    expect(info.routes.map((r) => [r.route, r.taken])).toEqual([
      ['tfjs-node-gpu', false],
      ['webgpu', false],
      ['tfjs-node', false],
      ['wasm', true],
      ['cpu', false],
    ]);
    expect(info.routes[0]!.reason).toBe('@tensorflow/tfjs-node-gpu is not installed');
    expect(info.routes[3]!.reason).toBe('started');
    expect(info.routes[4]!.reason).toBe('not tried: a faster route is in use');
    expect(info.webgpu).toBeNull();
    // Native matmul is reported either way: active with its threads, or inactive with a reason.
    expect(info.nativeMatmul.active ? info.threads >= 1 : typeof info.nativeMatmul.reason).toBe(info.nativeMatmul.active ? true : 'string');
  });

  it('rejects an unknown backend name and bad thread counts', async () => {
    await expect(initBackend({ backend: 'metal' as never, log: null })).rejects.toThrow('backend: unknown backend "metal" (expected auto, tensorflow, webgpu, wasm or cpu)');
    await expect(initBackend({ backend: 'cpu', threads: 0, log: null })).rejects.toThrow('backend: threads must be a positive integer, found 0');
  });
});

describe('WebGPU adapters', () => {
  const info = (over: Partial<Parameters<typeof softwareReason>[0]>) => ({ vendor: '', architecture: '', device: '', description: '', isFallbackAdapter: false, ...over });
  it('software rasterisers are recognised from the adapter info; GPUs are not', () => {
    // As Dawn 0.6.2 reports Mesa's llvmpipe through OpenGL ES.
    expect(softwareReason(info({ device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'OpenGL version OpenGL ES 3.2 Mesa 22.3.6' }))).toBe('device "llvmpipe-llvm-15-0-6-256-bits-"');
    expect(softwareReason(info({ vendor: 'mesa', description: 'llvmpipe (LLVM 17.0.6, 256 bits)' }))).toBe('description "llvmpipe (LLVM 17.0.6, 256 bits)"');
    expect(softwareReason(info({ vendor: 'google', architecture: 'swiftshader', device: 'SwiftShader Device (Subzero)' }))).toBe('architecture "swiftshader"');
    expect(softwareReason(info({ device: 'Microsoft Basic Render Driver' }))).toBe('device "Microsoft Basic Render Driver"');
    expect(softwareReason(info({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H200' }))).toBeNull();
    expect(softwareReason(info({ vendor: 'nvidia', isFallbackAdapter: true }))).toBe('Dawn marks it as a fallback adapter');
  });
});
