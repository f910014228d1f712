// The native kernels registered on tfjs's wasm backend: results against a float64 reference,
// the fallbacks (dtype, batch broadcast), tfjs-wasm's own _FusedMatMul bias bug, heap growth,
// install / uninstall and the never-throw contract.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeNativeMatmul,
  installNativeMatmul,
  nativeMatmulStats,
  uninstallNativeMatmul,
} from '../../src/native/matmul.js';
import { maxRelError, randomArray, referenceGemm, startWasm } from './helpers.js';
import type { Act } from './helpers.js';

interface Case {
  aShape: number[];
  bShape: number[];
  transposeA: boolean;
  transposeB: boolean;
}

function dims(c: Case) {
  const ar = c.aShape.length;
  const br = c.bShape.length;
  const m = c.transposeA ? c.aShape[ar - 1] : c.aShape[ar - 2];
  const k = c.transposeA ? c.aShape[ar - 2] : c.aShape[ar - 1];
  const n = c.transposeB ? c.bShape[br - 2] : c.bShape[br - 1];
  const batchA = c.aShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const batchB = c.bShape.slice(0, -2).reduce((x, y) => x * y, 1);
  return { m, n, k, batchA, batchB };
}

function install() {
  const info = installNativeMatmul({ threads: 2 });
  if (!info.active) throw new Error(`native matmul must be built for these tests: ${info.reason}`);
  return info;
}

beforeAll(async () => {
  await startWasm();
  install();
});

afterAll(() => {
  uninstallNativeMatmul();
});

describe('BatchMatMul on the wasm backend', () => {
  const cases: Case[] = [
    { aShape: [5, 7], bShape: [7, 3], transposeA: false, transposeB: false },
    { aShape: [7, 5], bShape: [3, 7], transposeA: true, transposeB: true },
    { aShape: [4, 33, 20], bShape: [4, 20, 18], transposeA: false, transposeB: false },
    { aShape: [4, 20, 33], bShape: [4, 18, 20], transposeA: true, transposeB: true },
    { aShape: [2, 3, 9, 16], bShape: [2, 3, 17, 16], transposeA: false, transposeB: true },
    { aShape: [2, 3, 16, 9], bShape: [2, 3, 16, 17], transposeA: true, transposeB: false },
    // Plain broadcast: one side has a batch of 1.
    { aShape: [6, 10, 12], bShape: [12, 14], transposeA: false, transposeB: false },
    { aShape: [1, 10, 12], bShape: [6, 14, 12], transposeA: false, transposeB: true },
    // Degenerate sizes.
    { aShape: [3, 1, 1], bShape: [3, 1, 1], transposeA: false, transposeB: false },
    { aShape: [2, 4, 0], bShape: [2, 0, 5], transposeA: false, transposeB: false },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.aShape)} x ${JSON.stringify(c.bShape)} transposeA=${c.transposeA} transposeB=${c.transposeB}`, async () => {
      const d = dims(c);
      const aData = randomArray(c.aShape.reduce((x, y) => x * y, 1), 11);
      const bData = randomArray(c.bShape.reduce((x, y) => x * y, 1), 12);
      const before = nativeMatmulStats().nativeCalls;
      const out = tf.tidy(() => tf.matMul(tf.tensor(aData, c.aShape), tf.tensor(bData, c.bShape), c.transposeA, c.transposeB));
      expect(nativeMatmulStats().nativeCalls).toBe(before + 1);
      const ref = referenceGemm({ a: aData, b: bData, ...d, transposeA: c.transposeA, transposeB: c.transposeB });
      expect(maxRelError(await out.data(), ref)).toBeLessThan(1e-5);
      out.dispose();
    });
  }

  it('broadcasts batch dims NumPy-style where tfjs-wasm fills only part of the output', async () => {
    const aData = randomArray(2 * 1 * 4 * 5, 1);
    const bData = randomArray(1 * 3 * 5 * 2, 2);
    const run = () => tf.tidy(() => tf.matMul(tf.tensor(aData, [2, 1, 4, 5]), tf.tensor(bData, [1, 3, 5, 2])));
    const before = nativeMatmulStats().nativeCalls;
    const out = run();
    expect(nativeMatmulStats().nativeCalls).toBe(before + 1);
    expect(out.shape).toEqual([2, 3, 4, 2]);
    const got = await out.data();
    out.dispose();
    expect(got.length).toBe(48);
    // out[i, j] = a[i, 0] @ b[0, j]
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        const ref = referenceGemm({ a: aData.subarray(i * 20, i * 20 + 20), b: bData.subarray(j * 10, j * 10 + 10), m: 4, n: 2, k: 5 });
        const f = i * 3 + j;
        expect(maxRelError(got.subarray(f * 8, f * 8 + 8), ref)).toBeLessThan(1e-5);
      }
    }
    // tfjs-wasm 4.22's own kernel allocates max(batchA, batchB) = 3 matrices for this 6-matrix
    // output (its cpu backend does the same).
    uninstallNativeMatmul();
    try {
      const original = run();
      expect((await original.data()).length).toBe(24);
      original.dispose();
    } finally {
      install();
    }
  });

  it('broadcasts a trailing batch ([2, 3] with [3]) in one call per output matrix', async () => {
    const aData = randomArray(2 * 3 * 4 * 5, 3);
    const bData = randomArray(3 * 5 * 2, 4);
    const out = tf.tidy(() => tf.matMul(tf.tensor(aData, [2, 3, 4, 5]), tf.tensor(bData, [3, 5, 2])));
    const got = await out.data();
    out.dispose();
    for (let f = 0; f < 6; f++) {
      const ref = referenceGemm({ a: aData.subarray(f * 20, f * 20 + 20), b: bData.subarray((f % 3) * 10, (f % 3) * 10 + 10), m: 4, n: 2, k: 5 });
      expect(maxRelError(got.subarray(f * 8, f * 8 + 8), ref)).toBeLessThan(1e-5);
    }
  });

  it('hands int32 to the original kernel, which keeps its own error', () => {
    const before = nativeMatmulStats().fallbacks['dtype int32'] ?? 0;
    expect(() => tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), tf.tensor2d([1, 0, 0, 1], [2, 2], 'int32')))).toThrow(
      'BatchMatMul for non non-float32 tensors not yet supported.',
    );
    expect(nativeMatmulStats().fallbacks['dtype int32']).toBe(before + 1);
  });

  it('leaks no tensors', () => {
    const a = tf.tensor(randomArray(3 * 8 * 8, 3), [3, 8, 8]);
    const count = tf.memory().numTensors;
    tf.tidy(() => {
      tf.matMul(a, a, false, true);
    });
    expect(tf.memory().numTensors).toBe(count);
    a.dispose();
  });
});

describe('_FusedMatMul on the wasm backend', () => {
  const [batch, m, n, k] = [3, 6, 10, 8];
  const aData = randomArray(batch * m * k, 21);
  const bData = randomArray(batch * k * n, 22).map((v) => v * 3);
  const biasData = randomArray(n, 23);

  function fused(transposeA: boolean, activation: Act = 'linear', extra: Partial<Parameters<typeof tf.fused.matMul>[0]> = {}) {
    return tf.tidy(() =>
      tf.fused.matMul({
        a: tf.tensor(aData, transposeA ? [batch, k, m] : [batch, m, k]),
        b: tf.tensor(bData, [batch, k, n]),
        transposeA,
        bias: tf.tensor1d(biasData),
        activation,
        ...extra,
      }),
    );
  }

  it("tfjs-wasm's own kernel gets the bias wrong for batch > 1 and transposeA; the native one does not", async () => {
    const refs = [false, true].map((transposeA) =>
      referenceGemm({ a: aData, b: bData, m, n, k, transposeA, batchA: batch, batchB: batch, bias: biasData }),
    );
    uninstallNativeMatmul();
    const originalErrors: number[] = [];
    for (const transposeA of [false, true]) {
      const t = fused(transposeA);
      originalErrors.push(maxRelError(await t.data(), refs[Number(transposeA)]));
      t.dispose();
    }
    install();
    // Measured with tfjs-backend-wasm 4.22: relative errors of about 0.1 to 1.
    expect(originalErrors[0]).toBeGreaterThan(1e-2);
    expect(originalErrors[1]).toBeGreaterThan(1e-2);
    for (const transposeA of [false, true]) {
      const t = fused(transposeA);
      expect(maxRelError(await t.data(), refs[Number(transposeA)])).toBeLessThan(1e-5);
      t.dispose();
    }
  });

  const acts: Act[] = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'];
  for (const activation of acts) {
    it(`bias + ${activation}, transposeA false and true`, async () => {
      const slopes = randomArray(n, 24).map((v) => v * 0.5);
      for (const transposeA of [false, true]) {
        const before = nativeMatmulStats().nativeCalls;
        const t = tf.tidy(() =>
          fused(transposeA, activation, {
            leakyreluAlpha: 0.15,
            preluActivationWeights: activation === 'prelu' ? tf.tensor1d(slopes) : undefined,
          }),
        );
        expect(nativeMatmulStats().nativeCalls).toBe(before + 1);
        const ref = referenceGemm({
          a: aData, b: bData, m, n, k, transposeA, batchA: batch, batchB: batch,
          bias: biasData, activation, leaky: 0.15, alpha: activation === 'prelu' ? slopes : undefined,
        });
        expect(maxRelError(await t.data(), ref)).toBeLessThan(1e-5);
        t.dispose();
      }
    });
  }

  it('takes a rank-4 operand pair with a bias per batch entry ([2, 3, 1, n])', async () => {
    // tfjs-core flattens a and b to [6, ...] for the kernel; the bias keeps its rank.
    const a4 = randomArray(6 * m * k, 61);
    const b4 = randomArray(6 * k * n, 62);
    const bias = randomArray(6 * n, 63);
    const full = new Float32Array(6 * m * n);
    for (let b = 0; b < 6; b++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) full[(b * m + i) * n + j] = bias[b * n + j];
    const before = nativeMatmulStats().nativeCalls;
    const t = tf.tidy(() =>
      tf.fused.matMul({ a: tf.tensor(a4, [2, 3, m, k]), b: tf.tensor(b4, [2, 3, k, n]), bias: tf.tensor(bias, [2, 3, 1, n]), activation: 'relu' }),
    );
    expect(nativeMatmulStats().nativeCalls).toBe(before + 1);
    expect(t.shape).toEqual([2, 3, m, n]);
    const ref = referenceGemm({ a: a4, b: b4, m, n, k, batchA: 6, batchB: 6, bias: full, activation: 'relu' });
    expect(maxRelError(await t.data(), ref)).toBeLessThan(1e-5);
    t.dispose();
  });

  it('takes a bias broadcast over rows ([m, 1]) and per batch ([batch, 1, n])', async () => {
    for (const shape of [[m, 1], [batch, 1, n]]) {
      const bias = randomArray(shape.reduce((x, y) => x * y, 1), 31);
      // Expand to [batch, m, n] for the reference.
      const full = new Float32Array(batch * m * n);
      for (let b = 0; b < batch; b++) {
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) full[(b * m + i) * n + j] = shape.length === 2 ? bias[i] : bias[b * n + j];
        }
      }
      const t = tf.tidy(() =>
        tf.fused.matMul({ a: tf.tensor(aData, [batch, m, k]), b: tf.tensor(bData, [batch, k, n]), bias: tf.tensor(bias, shape) }),
      );
      const ref = referenceGemm({ a: aData, b: bData, m, n, k, batchA: batch, batchB: batch, bias: full });
      expect(maxRelError(await t.data(), ref)).toBeLessThan(1e-5);
      t.dispose();
    }
  });
});

describe('wasm heap growth', () => {
  it('stays right when the heap grows between calls and while allocating the output', async () => {
    const backend = tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } };
    const [m, n, k] = [64, 48, 40];
    const aData = randomArray(m * k, 41);
    const bData = randomArray(k * n, 42);
    const a = tf.tensor(aData, [m, k]);
    const b = tf.tensor(bData, [k, n]);
    const ref = referenceGemm({ a: aData, b: bData, m, n, k });
    const first = tf.matMul(a, b);
    expect(maxRelError(await first.data(), ref)).toBeLessThan(1e-5);
    // A big allocation between two calls grows (and so replaces) the heap's ArrayBuffer.
    const bufferBefore = backend.wasm.HEAPU8.buffer;
    const big = tf.zeros([64 * 1024 * 1024 / 4 + backend.wasm.HEAPU8.length / 4]);
    expect(backend.wasm.HEAPU8.buffer).not.toBe(bufferBefore);
    const second = tf.matMul(a, b);
    expect(maxRelError(await second.data(), ref)).toBeLessThan(1e-5);
    big.dispose();
    // An output larger than the whole heap: the heap grows inside the kernel's own allocation,
    // after the inputs were written.
    const rows = Math.ceil((backend.wasm.HEAPU8.length + (16 << 20)) / (4 * 4096));
    const wideData = randomArray(k * 4096, 43);
    const tallData = randomArray(rows * k, 44);
    const wide = tf.tensor(wideData, [k, 4096]);
    const tall = tf.tensor(tallData, [rows, k]);
    const bufferMid = backend.wasm.HEAPU8.buffer;
    const huge = tf.matMul(tall, wide);
    expect(backend.wasm.HEAPU8.buffer).not.toBe(bufferMid);
    const hugeData = (await huge.data()) as Float32Array;
    for (const row of [0, rows - 1]) {
      const spot = referenceGemm({ a: tallData.subarray(row * k, row * k + k), b: wideData, m: 1, n: 4096, k });
      expect(maxRelError(hugeData.subarray(row * 4096, row * 4096 + 4096), spot)).toBeLessThan(1e-5);
    }
    for (const t of [a, b, first, second, wide, tall, huge]) t.dispose();
  });
});

describe('install and describe', () => {
  it('reports the kernel, its threads and isa', () => {
    const info = describeNativeMatmul();
    expect(info.active).toBe(true);
    expect(info.threads).toBe(2);
    expect(['avx2-fma', 'scalar']).toContain(info.isa);
    expect(info.summary).toBe(`native matmul: ${info.isa}, 2 threads (${info.addonPath})`);
  });

  it('forces the scalar microkernel and stays right', async () => {
    const info = installNativeMatmul({ threads: 2, isa: 'scalar' });
    expect(info.isa).toBe('scalar');
    const aData = randomArray(3 * 20 * 30, 51);
    const bData = randomArray(3 * 30 * 25, 52);
    const t = tf.tidy(() => tf.matMul(tf.tensor(aData, [3, 20, 30]), tf.tensor(bData, [3, 30, 25])));
    expect(maxRelError(await t.data(), referenceGemm({ a: aData, b: bData, m: 20, n: 25, k: 30, batchA: 3, batchB: 3 }))).toBeLessThan(1e-5);
    t.dispose();
    expect(installNativeMatmul({ threads: 2, isa: 'auto' }).isa).toBe(info.detectedIsa);
    process.env.RPV_MATMUL_ISA = 'scalar';
    try {
      expect(installNativeMatmul({ threads: 2 }).isa).toBe('scalar');
    } finally {
      delete process.env.RPV_MATMUL_ISA;
    }
    expect(installNativeMatmul({ threads: 2 }).isa).toBe(info.detectedIsa);
  });

  it('never throws for a missing addon: inactive with the reason, originals back in place', () => {
    const info = installNativeMatmul({ addonPath: '/nonexistent/rpv_matmul.node' });
    expect(info).toMatchObject({
      active: false,
      threads: 0,
      reason: 'addon not found at /nonexistent/rpv_matmul.node',
    });
    expect(info.summary).toBe(`native matmul: off (${info.reason}); tfjs-wasm's own single-threaded matmul is used`);
    const before = nativeMatmulStats().nativeCalls;
    tf.tidy(() => tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])));
    expect(nativeMatmulStats().nativeCalls).toBe(before);
    install();
  });

  it('never throws for a binary that does not load', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-native-bogus-'));
    const bogus = path.join(dir, 'rpv_matmul.node');
    writeFileSync(bogus, 'not a shared object');
    try {
      const info = installNativeMatmul({ addonPath: bogus });
      expect(info.active).toBe(false);
      expect(info.reason).toMatch(new RegExp(`^addon ${bogus.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} failed to load: .*(invalid ELF header|too short)`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
      install();
    }
  });

  it('is disabled by RPV_NATIVE_MATMUL=0 and rejects a bad RPV_MATMUL_THREADS', () => {
    process.env.RPV_NATIVE_MATMUL = '0';
    try {
      expect(installNativeMatmul()).toMatchObject({ active: false, reason: 'disabled by RPV_NATIVE_MATMUL=0' });
    } finally {
      delete process.env.RPV_NATIVE_MATMUL;
    }
    process.env.RPV_MATMUL_THREADS = 'two';
    try {
      expect(() => installNativeMatmul()).toThrow('native matmul: RPV_MATMUL_THREADS must be an integer from 1 to 256, found "two"');
    } finally {
      delete process.env.RPV_MATMUL_THREADS;
    }
    expect(install().active).toBe(true);
  });
});
