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
    // Native matmul is reported either way: active with its threads, or inactive with a reason.
    expect(info.nativeMatmul.active ? info.threads >= 1 : typeof info.nativeMatmul.reason).toBe(info.nativeMatmul.active ? true : 'string');
  });

  it('rejects an unknown backend name and bad thread counts', async () => {
    await expect(initBackend({ backend: 'webgpu' as never, log: null })).rejects.toThrow('backend: unknown backend "webgpu" (expected auto, tensorflow, wasm or cpu)');
    await expect(initBackend({ backend: 'cpu', threads: 0, log: null })).rejects.toThrow('backend: threads must be a positive integer, found 0');
  });
});
