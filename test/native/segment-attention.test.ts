// The fused attention's packed-row mode (segment starts instead of a mask, src/native/attention.cc)
// against a float64 reference of block-diagonal causal attention, forward (output) and backward
// (dq, dk, dv): samples that cross the kernel's 48-row blocks, many short samples in one block, a
// padding tail, grouped-query heads, with 1 and 2 threads.
import { afterAll, describe, expect, it } from 'vitest';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { randomArray } from './helpers.js';

const addon = loadNativeAddon().addon as NativeAddon;
const originalThreads = addon.threads();
afterAll(() => addon.setThreads(originalThreads));

interface Case {
  T: number;
  nh: number;
  nkv: number;
  hd: number;
  /** Sample lengths per row (the rest of a row up to T is a padding segment). */
  rows: number[][];
}

function startsOf(c: Case): Float32Array {
  const starts = new Float32Array(c.rows.length * c.T);
  c.rows.forEach((lengths, b) => {
    let at = 0;
    for (const n of lengths) {
      for (let t = at; t < at + n; t++) starts[b * c.T + t] = at;
      at += n;
    }
    for (let t = at; t < c.T; t++) starts[b * c.T + t] = at;
  });
  return starts;
}

/** softmax over keys [start_i, i] per row, in float64, and its gradients for `dout`. */
function reference(c: Case, starts: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array) {
  const { T, nh, nkv, hd } = c;
  const B = c.rows.length;
  const g = nh / nkv;
  const out = new Float64Array(B * T * nh * hd);
  const dq = new Float64Array(out.length);
  const dk = new Float64Array(B * T * nkv * hd);
  const dv = new Float64Array(dk.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nh; h++) {
      const kv = Math.floor(h / g);
      for (let i = 0; i < T; i++) {
        const qi = (b * T + i) * nh * hd + h * hd;
        const lo = starts[b * T + i]!;
        const p = new Float64Array(T);
        let max = -Infinity;
        for (let j = lo; j <= i; j++) {
          const kj = (b * T + j) * nkv * hd + kv * hd;
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[qi + e]! * k[kj + e]!;
          p[j] = dot;
          max = Math.max(max, dot);
        }
        let sum = 0;
        for (let j = lo; j <= i; j++) sum += p[j] = Math.exp(p[j]! - max);
        for (let j = lo; j <= i; j++) p[j]! /= sum;
        const dp = new Float64Array(T);
        let dot = 0;
        for (let j = lo; j <= i; j++) {
          const vj = (b * T + j) * nkv * hd + kv * hd;
          for (let e = 0; e < hd; e++) {
            out[qi + e]! += p[j]! * v[vj + e]!;
            dp[j]! += dout[qi + e]! * v[vj + e]!;
          }
          dot += p[j]! * dp[j]!;
        }
        for (let j = lo; j <= i; j++) {
          const ds = p[j]! * (dp[j]! - dot);
          const kj = (b * T + j) * nkv * hd + kv * hd;
          for (let e = 0; e < hd; e++) {
            dq[qi + e]! += ds * k[kj + e]!;
            dk[kj + e]! += ds * q[qi + e]!;
            dv[kj + e]! += p[j]! * dout[qi + e]!;
          }
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
    scale = Math.max(scale, Math.abs(want[i]!));
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
  }
  return err / scale;
}

const CASES: Case[] = [
  { T: 1, nh: 1, nkv: 1, hd: 1, rows: [[1]] },
  { T: 9, nh: 4, nkv: 2, hd: 8, rows: [[3, 2, 4], [5]] },
  { T: 130, nh: 6, nkv: 2, hd: 16, rows: [[40, 30, 45, 15]] },
  { T: 110, nh: 3, nkv: 3, hd: 5, rows: [[1, 1, 2, 50, 7, 3, 30], [100]] },
  { T: 200, nh: 4, nkv: 1, hd: 4, rows: [[12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]] },
];

for (const threads of [1, 2]) {
  describe(`segment attention with ${threads} thread(s)`, () => {
    for (const c of CASES) {
      it(`T=${c.T} heads ${c.nh}/${c.nkv} hd=${c.hd} rows ${c.rows.map((r) => r.join('+')).join(' | ')}`, () => {
        addon.setThreads(threads);
        const { T, nh, nkv, hd } = c;
        const B = c.rows.length;
        const qn = B * T * nh * hd;
        const kn = B * T * nkv * hd;
        const q = randomArray(qn, 1 + T).map((x) => x * 1.5);
        const k = randomArray(kn, 2 + T);
        const v = randomArray(kn, 3 + hd);
        const dout = randomArray(qn, 4);
        const starts = startsOf(c);
        const sizes = [qn, kn, kn, B * T, qn, B * nh * T, qn, qn, kn, kn];
        const offs: number[] = [];
        let at = 3;
        for (const n of sizes) {
          offs.push(at);
          at += n + 5;
        }
        // NaN everywhere else: a read outside an operand would show.
        const heap = new Float32Array(at).fill(Number.NaN);
        heap.set(q, offs[0]);
        heap.set(k, offs[1]);
        heap.set(v, offs[2]);
        heap.set(starts, offs[3]);
        heap.set(dout, offs[6]);
        const dims = Float64Array.of(B, T, T, nh, nkv, hd, 1, 1);
        addon.attentionForward!(heap, dims, offs[0]!, offs[1]!, offs[2]!, offs[3]!, offs[4]!, offs[5]!);
        addon.attentionBackward!(heap, dims, offs[0]!, offs[1]!, offs[2]!, offs[3]!, offs[4]!, offs[5]!, offs[6]!, offs[7]!, offs[8]!, offs[9]!);
        const want = reference(c, starts, q, k, v, dout);
        const view = (i: number) => heap.subarray(offs[i], offs[i]! + sizes[i]!);
        expect(maxRel(view(4), want.out)).toBeLessThan(2e-5);
        expect(maxRel(view(7), want.dq)).toBeLessThan(2e-5);
        expect(maxRel(view(8), want.dk)).toBeLessThan(2e-5);
        expect(maxRel(view(9), want.dv)).toBeLessThan(2e-5);
      });
    }
  });
}

it('refuses segment starts outside the causal mode, and starts outside the heap', () => {
  expect(() => addon.attentionForward!(new Float32Array(100), Float64Array.of(1, 2, 2, 1, 1, 2, 0, 1), 0, 0, 0, 0, 0, 0)).toThrow(
    'rpv attention: attentionForward: segment starts need the causal mode (dims[6] = 1)',
  );
  expect(() => addon.attentionForward!(new Float32Array(20), Float64Array.of(1, 2, 2, 1, 1, 2, 1, 1), 0, 4, 8, 19, 0, 0)).toThrow(
    'rpv attention: attentionForward: starts lies outside the heap',
  );
});
