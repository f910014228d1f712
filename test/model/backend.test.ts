import { describe, expect, it } from 'vitest';
import { describeBackend, initBackend } from '../../src/index.js';

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
