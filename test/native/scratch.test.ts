// Failures inside the native kernels (src/native/napi_exports.h, thread_pool.cc, scratch.h): a
// scratch allocation that fails, on the calling thread or a pool thread, is a JavaScript error
// naming the kernel and the bytes asked for (forced with the addon's setScratchLimit hook: a buffer
// that already holds enough allocates nothing, so the order of the tests matters), and the pool
// works on afterwards; the cross-entropy's partial sums stay within their bound; and the memory
// plan's nativeScratchBytes covers what the kernels hold.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { GemmParam, loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { nativeScratchBytes } from '../../src/train/memory.js';
import { randomArray } from './helpers.js';

const load = loadNativeAddon();
if (!load.addon) throw new Error(`native addon must be built for these tests: ${load.reason}`);
const addon: NativeAddon = load.addon;
const originalThreads = addon.threads();
const dir = mkdtempSync(path.join(os.tmpdir(), 'rpv-scratch-'));

afterEach(() => addon.setScratchLimit?.(null));
afterAll(() => {
  addon.setThreads(originalThreads);
  rmSync(dir, { recursive: true, force: true });
});

const ADVICE = 'free memory, or lower prompt.max_tokens, data.batch_size or model.threads';

/** The error a call throws (fails the test when it does not throw). */
function thrown(call: () => void): Error & { code?: string } {
  try {
    call();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('the call did not throw');
}

/** A float32 [rows, cols] head written to a file and mapped: its weight descriptor. */
function mappedHead(name: string, rows: number, cols: number, seed: number): { desc: Float64Array; values: Float32Array } {
  const values = randomArray(rows * cols, seed).map((v) => v * 0.1);
  const file = path.join(dir, `${name}.bin`);
  writeFileSync(file, new Uint8Array(values.buffer));
  const [id] = addon.mapFile!(file);
  return { desc: new Float64Array([id, 0, 0, rows, cols]), values };
}

/** An attention problem [batch, queries = keys, heads = kvHeads, headDim] laid out in one heap. */
function attentionHeap(batch: number, tokens: number, heads: number, headDim: number) {
  const n = batch * tokens * heads * headDim;
  const maskFloats = batch * tokens * tokens;
  const lseFloats = batch * heads * tokens;
  const o = { q: 0, k: n, v: 2 * n, dout: 3 * n, dq: 4 * n, dk: 5 * n, dv: 6 * n, out: 7 * n, mask: 8 * n, lse: 8 * n + maskFloats };
  const heap = new Float32Array(8 * n + maskFloats + lseFloats);
  heap.set(randomArray(4 * n, 7), 0);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < tokens; i++) {
      for (let j = i + 1; j < tokens; j++) heap[o.mask + (b * tokens + i) * tokens + j] = -1e9;
    }
  }
  const dims = new Float64Array([batch, tokens, tokens, heads, heads, headDim]);
  return {
    heap,
    n,
    o,
    forward: () => addon.attentionForward!(heap, dims, o.q, o.k, o.v, o.mask, o.out, o.lse),
    backward: () => addon.attentionBackward!(heap, dims, o.q, o.k, o.v, o.mask, o.out, o.lse, o.dout, o.dq, o.dk, o.dv),
    output: () => heap.slice(o.out, o.out + n),
  };
}

describe('native kernel scratch and the memory plan', () => {
  it('holds no more than the memory plan counts for a step: GEMMs, attention both ways and the cross-entropy', () => {
    const config = { hiddenSize: 64, vocabSize: 2500, numHeads: 4, headDim: 16 };
    const batch = 2;
    const tokens = 200;
    // First in this file: the calling thread holds no scratch yet, and a new pool's threads none.
    addon.setThreads(3);
    const planned = nativeScratchBytes({ config, threads: 3, maxTokens: tokens, batchSize: batch });
    const start = addon.scratchBytes!();
    const a = attentionHeap(batch, tokens, config.numHeads, config.headDim);
    a.forward();
    a.backward();
    const rows = batch * tokens;
    const head = mappedHead('xent-plan', config.vocabSize, config.hiddenSize, 31);
    const heap = randomArray(2 * rows * config.hiddenSize, 32);
    const targets = new Int32Array(rows).map((_, i) => (i * 7) % config.vocabSize);
    addon.crossEntropy!(heap, 0, rows, head.desc, targets, new Float32Array(rows), rows * config.hiddenSize, 2000);
    const params = new Float64Array(GemmParam.count);
    const [m, n, k] = [rows, 4 * config.hiddenSize, config.hiddenSize];
    params.set([1, m, n, k, 0, 0, 0, k, 0, 0, n, 0, 0, n, 0]);
    addon.gemm(randomArray(m * k, 33), randomArray(k * n, 34), new Float32Array(m * n), params);
    const held = addon.scratchBytes!() - start;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(planned);
  });
});

describe('native kernel failures', () => {
  it('reports scratch the calling thread cannot allocate as an error naming the kernel and the bytes', () => {
    addon.setThreads(2);
    const vocab = 10_000;
    const hidden = 32;
    const rows = 128;
    const head = mappedHead('xent-oom', vocab, hidden, 11);
    const heap = randomArray(2 * rows * hidden, 12);
    const targets = new Int32Array(rows).map((_, i) => (i * 37) % vocab);
    // 128 rows of logits over the vocabulary, more than the calling thread holds from the test above.
    addon.setScratchLimit!(1_000_000);
    const err = thrown(() => addon.crossEntropy!(heap, 0, rows, head.desc, targets, new Float32Array(rows), rows * hidden, rows));
    expect(err.message).toBe(`rpv native: crossEntropy: out of memory: cannot allocate 5120000 bytes (4.9 MiB) of scratch; ${ADVICE}`);
    expect(err.code).toBe('ERR_RPV_NATIVE');
    expect(thrown(() => addon.setScratchLimit!(-1)).message).toBe('rpv native: setScratchLimit(bytes): bytes must be a non-negative integer or null');
  });

  it('names the per-call buffers of the attention backward pass and the GEMM packing', () => {
    addon.setThreads(2);
    const a = attentionHeap(1, 64, 8, 16);
    addon.setScratchLimit!(1024);
    // dK and dV parts per query head: 8 heads x 64 keys x 16 floats.
    expect(thrown(a.backward).message).toBe(
      `rpv native: attentionBackward: out of memory: cannot allocate 32768 bytes (32.0 KiB) of scratch; ${ADVICE}`,
    );
    addon.setThreads(1);
    const m = 500;
    const params = new Float64Array(GemmParam.count);
    params.set([1, m, m, m, 0, 0, 0, m, 0, 0, m, 0, 0, m, 0]);
    const x = randomArray(m * m, 3);
    // Three row tiles share one packed B: 500 deep x 512 columns (padded to the 16-wide panels).
    expect(thrown(() => addon.gemm(x, x, new Float32Array(m * m), params)).message).toBe(
      `rpv native: gemm: out of memory: cannot allocate 1024000 bytes (1000.0 KiB) of scratch; ${ADVICE}`,
    );
  });

  it('rethrows on the calling thread what a pool thread could not allocate, and the pool works on', () => {
    addon.setThreads(2);
    const a = attentionHeap(1, 256, 32, 32);
    a.forward();
    const before = a.output();
    // The calling thread now holds its rows of scores; a new pool's other threads hold none, and
    // each task they run asks for 48 query rows x 256 keys. (Until one of them runs a task, the
    // calling thread does the work without allocating: try again.)
    addon.setThreads(4);
    addon.setScratchLimit!(1024);
    let err: (Error & { code?: string }) | undefined;
    for (let attempt = 0; attempt < 50 && !err; attempt++) {
      try {
        a.forward();
      } catch (e) {
        err = e as Error & { code?: string };
      }
    }
    expect(err?.message).toBe(`rpv native: attentionForward: out of memory: cannot allocate 49152 bytes (48.0 KiB) of scratch; ${ADVICE}`);
    expect(err?.code).toBe('ERR_RPV_NATIVE');
    addon.setScratchLimit!(null);
    a.heap.fill(0, a.o.out, a.o.out + a.n);
    for (let i = 0; i < 3; i++) a.forward();
    const after = a.output();
    expect(after.findIndex((v, i) => !Object.is(v, before[i]))).toBe(-1);
  });
});

describe('cross-entropy scratch', () => {
  it('keeps the cross-entropy partial sums of dH within 4 MiB however wide the hidden states', () => {
    // One thread: every buffer is the calling thread's, so the bytes held are exact. 4 vocabulary
    // slices x 96 rows x 2,816 columns would be 4.1 MiB.
    addon.setThreads(1);
    const vocab = 3100;
    const hidden = 2816;
    const rows = 96;
    const head = mappedHead('xent-wide', vocab, hidden, 21);
    const heap = randomArray(2 * rows * hidden, 22);
    const targets = new Int32Array(rows).map((_, i) => (i * 131) % vocab);
    const loss = new Float32Array(rows);
    addon.crossEntropy!(heap, 0, rows, head.desc, targets, loss, -1, rows);
    const held = addon.scratchBytes!();
    addon.crossEntropy!(heap, 0, rows, head.desc, targets, loss, rows * hidden, rows);
    const partial = addon.scratchBytes!() - held;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThanOrEqual(4 * 2 ** 20);
    // Rows 0 and 95 against float64: the loss, and dH in both column blocks.
    for (const r of [0, rows - 1]) {
      const h = heap.subarray(r * hidden, (r + 1) * hidden);
      const logits = new Float64Array(vocab);
      for (let v = 0; v < vocab; v++) {
        let dot = 0;
        for (let j = 0; j < hidden; j++) dot += h[j] * head.values[v * hidden + j];
        logits[v] = dot;
      }
      const max = Math.max(...logits);
      const p = logits.map((x) => Math.exp(x - max));
      const sum = p.reduce((s, x) => s + x, 0);
      expect(loss[r]).toBeCloseTo(max + Math.log(sum) - logits[targets[r]], 4);
      p.forEach((x, v) => (p[v] = x / sum - (v === targets[r] ? 1 : 0)));
      let err = 0;
      for (let j = 0; j < hidden; j++) {
        let want = 0;
        for (let v = 0; v < vocab; v++) want += p[v] * head.values[v * hidden + j];
        err = Math.max(err, Math.abs(heap[(rows + r) * hidden + j] - want));
      }
      expect(err).toBeLessThan(1e-5);
    }
  });
});
