// The fused attention's non-causal mode (an encoder's: every key read, the mask alone decides),
// forward and backward against a float64 reference, with 1 and 2 threads; a zero mask must not
// be read as causal (it was before the mode existed), keys may be fewer than queries, and masked
// keys still count as masked.
import { afterAll, describe, expect, it } from 'vitest';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { randomArray } from './helpers.js';

const addon = loadNativeAddon().addon as NativeAddon;
const originalThreads = addon.threads();
afterAll(() => addon.setThreads(originalThreads));

interface Case { B: number; T: number; S: number; nh: number; nkv: number; hd: number; masked: number }

/** Plain softmax(q k^T + mask) v and its gradients in float64, no causal rule. */
function reference(c: Case, q: Float32Array, k: Float32Array, v: Float32Array, mask: Float32Array, dout: Float32Array) {
  const { B, T, S, nh, nkv, hd } = c;
  const out = new Float64Array(B * T * nh * hd);
  const dq = new Float64Array(out.length);
  const dk = new Float64Array(B * S * nkv * hd);
  const dv = new Float64Array(dk.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < nh; h++) {
    const kv = Math.floor(h / (nh / nkv));
    for (let i = 0; i < T; i++) {
      const qi = (b * T + i) * nh * hd + h * hd;
      const kAt = (j: number) => (b * S + j) * nkv * hd + kv * hd;
      const s = Array.from({ length: S }, (_, j) => {
        let dot = mask[(b * T + i) * S + j];
        for (let e = 0; e < hd; e++) dot += q[qi + e] * k[kAt(j) + e];
        return dot;
      });
      const max = Math.max(...s);
      const ex = s.map((x) => Math.exp(x - max));
      const sum = ex.reduce((a, x) => a + x, 0);
      const p = ex.map((x) => x / sum);
      const dp = new Float64Array(S);
      let pdp = 0;
      for (let j = 0; j < S; j++) {
        for (let e = 0; e < hd; e++) {
          out[qi + e] += p[j] * v[kAt(j) + e];
          dp[j] += dout[qi + e] * v[kAt(j) + e];
        }
        pdp += p[j] * dp[j];
      }
      for (let j = 0; j < S; j++) {
        const ds = p[j] * (dp[j] - pdp);
        for (let e = 0; e < hd; e++) {
          dq[qi + e] += ds * k[kAt(j) + e];
          dk[kAt(j) + e] += ds * q[qi + e];
          dv[kAt(j) + e] += p[j] * dout[qi + e];
        }
      }
    }
  }
  return { out, dq, dk, dv };
}

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-6;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

const CASES: Case[] = [
  { B: 1, T: 1, S: 1, nh: 1, nkv: 1, hd: 1, masked: 0 },
  { B: 2, T: 17, S: 17, nh: 4, nkv: 4, hd: 8, masked: 0 },
  { B: 1, T: 65, S: 65, nh: 3, nkv: 1, hd: 16, masked: 0 },
  { B: 2, T: 9, S: 4, nh: 2, nkv: 2, hd: 5, masked: 0 },
  { B: 1, T: 50, S: 53, nh: 2, nkv: 2, hd: 7, masked: 3 },
];

function runCase(c: Case) {
  const { B, T, S, nh, nkv, hd } = c;
  const qn = B * T * nh * hd;
  const kn = B * S * nkv * hd;
  const q = randomArray(qn, 11 + T).map((x) => x * 1.5);
  const k = randomArray(kn, 12 + S);
  const v = randomArray(kn, 13 + hd);
  const dout = randomArray(qn, 14);
  // The last `masked` keys are not allowed for any query (padding keys).
  const mask = new Float32Array(B * T * S).map((_, i) => (i % S >= S - c.masked ? -1e9 : 0));
  const sizes = [qn, kn, kn, B * T * S, qn, B * nh * T, qn, qn, kn, kn];
  const offs: number[] = [];
  let at = 1;
  for (const n of sizes) {
    offs.push(at);
    at += n + 3;
  }
  const heap = new Float32Array(at);
  heap.set(q, offs[0]);
  heap.set(k, offs[1]);
  heap.set(v, offs[2]);
  heap.set(mask, offs[3]);
  heap.set(dout, offs[6]);
  const dims = Float64Array.of(B, T, S, nh, nkv, hd, 0);
  addon.attentionForward!(heap, dims, offs[0], offs[1], offs[2], offs[3], offs[4], offs[5]);
  addon.attentionBackward!(heap, dims, offs[0], offs[1], offs[2], offs[3], offs[4], offs[5], offs[6], offs[7], offs[8], offs[9]);
  const view = (i: number) => heap.subarray(offs[i], offs[i] + sizes[i]);
  return { got: { out: view(4), dq: view(7), dk: view(8), dv: view(9) }, want: reference(c, q, k, v, mask, dout) };
}

for (const threads of [1, 2]) {
  describe(`non-causal fused attention with ${threads} thread(s)`, () => {
    for (const c of CASES) {
      it(`B=${c.B} T=${c.T} S=${c.S} heads ${c.nh}/${c.nkv} hd=${c.hd} masked keys ${c.masked}`, () => {
        addon.setThreads(threads);
        const { got, want } = runCase(c);
        expect(maxRel(got.out, want.out)).toBeLessThan(2e-5);
        expect(maxRel(got.dq, want.dq)).toBeLessThan(2e-5);
        expect(maxRel(got.dk, want.dk)).toBeLessThan(2e-5);
        expect(maxRel(got.dv, want.dv)).toBeLessThan(2e-5);
      });
    }
  });
}

it('reads a zero mask as no mask, not as causal', () => {
  // The first query's output must depend on the last key (a causal kernel never reads it).
  const { got, want } = runCase({ B: 1, T: 6, S: 6, nh: 1, nkv: 1, hd: 4, masked: 0 });
  expect(maxRel(got.out.subarray(0, 4), want.out.subarray(0, 4))).toBeLessThan(2e-5);
});

it('refuses a causal switch other than 0 or 1', () => {
  expect(() => addon.attentionForward!(new Float32Array(10), Float64Array.of(1, 1, 1, 1, 1, 1, 2), 0, 0, 0, 0, 0, 0)).toThrow(
    'rpv attention: attentionForward: dims[6] (causal) must be 0 or 1',
  );
});

describe('attend (src/model/attend.ts): the shared core on the fused kernel and on tfjs ops', () => {
  for (const causal of [false, true]) {
    for (const fused of [true, false]) {
      it(`${causal ? 'causal' : 'non-causal'}, ${fused ? 'fused kernel' : 'tfjs ops'}: equals the float64 reference with scale and a key mask`, async () => {
        const tf = await import('@tensorflow/tfjs-core');
        const { initBackend } = await import('../../src/index.js');
        const { attend } = await import('../../src/model/attend.js');
        const { nativeAttentionAvailable } = await import('../../src/native/attention.js');
        await initBackend({ backend: 'wasm', log: null });
        if (fused) delete process.env.RPV_FUSED_ATTENTION;
        else process.env.RPV_FUSED_ATTENTION = '0';
        try {
          expect(nativeAttentionAvailable()).toBe(fused);
          const c: Case = { B: 2, T: 6, S: 9, nh: 4, nkv: 2, hd: 8, masked: 2 };
          const scale = 0.3;
          const q = randomArray(c.B * c.T * c.nh * c.hd, 21);
          const k = randomArray(c.B * c.S * c.nkv * c.hd, 22);
          const v = randomArray(c.B * c.S * c.nkv * c.hd, 23);
          // Key mask [B, 1, S]: the last `masked` keys hidden; plus the causal rule when asked.
          const keyMask = new Float32Array(c.B * c.S).map((_, i) => (i % c.S >= c.S - c.masked ? -1e9 : 0));
          const full = new Float32Array(c.B * c.T * c.S).map((_, i) => {
            const j = i % c.S;
            const qi = Math.floor(i / c.S) % c.T;
            return keyMask[Math.floor(i / (c.T * c.S)) * c.S + j] + (causal && j > c.S - c.T + qi ? -1e9 : 0);
          });
          const got = tf.tidy(() =>
            attend(tf, tf.tensor2d(q, [c.B * c.T, c.nh * c.hd]), tf.tensor2d(k, [c.B * c.S, c.nkv * c.hd]), tf.tensor2d(v, [c.B * c.S, c.nkv * c.hd]),
              { batch: c.B, queries: c.T, keys: c.S, heads: c.nh, kvHeads: c.nkv, headDim: c.hd },
              { causal, scale, mask: tf.tensor3d(keyMask, [c.B, 1, c.S]) }).dataSync().slice(),
          );
          const want = reference(c, q.map((x) => x * scale), k, v, full, new Float32Array(q.length)).out;
          expect(maxRel(got, want)).toBeLessThan(2e-5);
        } finally {
          delete process.env.RPV_FUSED_ATTENTION;
        }
      });
    }
  }
});
