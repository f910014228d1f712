// The fused causal attention (src/native/attention.cc) against a float64 reference, forward
// (output) and backward (dq, dk, dv): grouped-query heads, one and several query blocks, keys
// beyond the queries (a cached past), left padding (rows with no allowed key give zeros), with 1
// and 2 threads; and in the model, the same losses and gradients as tfjs's attention.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { nativeAttentionAvailable } from '../../src/native/attention.js';
import { initBackend, loadModel, writeTinyModel } from '../../src/index.js';
import { seededRandom } from '../../src/util/random.js';
import { randomArray } from './helpers.js';

const addon = loadNativeAddon().addon as NativeAddon;
const originalThreads = addon.threads();
afterAll(() => addon.setThreads(originalThreads));

interface Case {
  B: number;
  T: number;
  S: number;
  nh: number;
  nkv: number;
  hd: number;
  /** Left padding per batch row (keys 0..pad-1 not allowed). */
  pad: number[];
}

function reference(c: Case, q: Float32Array, k: Float32Array, v: Float32Array, mask: Float32Array, dout: Float32Array) {
  const { B, T, S, nh, nkv, hd } = c;
  const g = nh / nkv;
  const out = new Float64Array(B * T * nh * hd);
  const dq = new Float64Array(out.length);
  const dk = new Float64Array(B * S * nkv * hd);
  const dv = new Float64Array(dk.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nh; h++) {
      const kv = Math.floor(h / g);
      for (let i = 0; i < T; i++) {
        const qi = (b * T + i) * nh * hd + h * hd;
        const s = new Float64Array(S);
        let max = -Infinity;
        for (let j = 0; j < S; j++) {
          const kj = (b * S + j) * nkv * hd + kv * hd;
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[qi + e] * k[kj + e];
          s[j] = dot + mask[(b * T + i) * S + j];
          max = Math.max(max, s[j]);
        }
        if (max < -1e8) continue; // no allowed key: zeros
        let sum = 0;
        const p = s.map((x) => Math.exp(x - max));
        p.forEach((x) => (sum += x));
        for (let j = 0; j < S; j++) p[j] /= sum;
        // forward
        for (let j = 0; j < S; j++) {
          const vj = (b * S + j) * nkv * hd + kv * hd;
          for (let e = 0; e < hd; e++) out[qi + e] += p[j] * v[vj + e];
        }
        // backward: dP = dO V^T, dS = P (dP - sum(P dP))
        const dp = new Float64Array(S);
        let dot = 0;
        for (let j = 0; j < S; j++) {
          const vj = (b * S + j) * nkv * hd + kv * hd;
          for (let e = 0; e < hd; e++) dp[j] += dout[qi + e] * v[vj + e];
          dot += p[j] * dp[j];
        }
        for (let j = 0; j < S; j++) {
          const ds = p[j] * (dp[j] - dot);
          const kj = (b * S + j) * nkv * hd + kv * hd;
          for (let e = 0; e < hd; e++) {
            dq[qi + e] += ds * k[kj + e];
            dk[kj + e] += ds * q[qi + e];
            dv[kj + e] += p[j] * dout[qi + e];
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
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

const CASES: Case[] = [
  { B: 1, T: 1, S: 1, nh: 1, nkv: 1, hd: 1, pad: [0] },
  { B: 2, T: 7, S: 7, nh: 4, nkv: 2, hd: 8, pad: [0, 3] },
  { B: 1, T: 50, S: 50, nh: 6, nkv: 2, hd: 16, pad: [0] },
  { B: 2, T: 100, S: 100, nh: 3, nkv: 3, hd: 5, pad: [9, 0] },
  { B: 1, T: 5, S: 12, nh: 4, nkv: 1, hd: 4, pad: [2] },
];

for (const threads of [1, 2]) {
  describe(`fused attention with ${threads} thread(s)`, () => {
    beforeAll(() => {
      addon.setThreads(threads);
    });
    for (const c of CASES) {
      it(`B=${c.B} T=${c.T} S=${c.S} heads ${c.nh}/${c.nkv} hd=${c.hd} padding ${c.pad.join(',')}`, () => {
        const { B, T, S, nh, nkv, hd } = c;
        const qn = B * T * nh * hd;
        const kn = B * S * nkv * hd;
        const q = randomArray(qn, 1 + T).map((x) => x * 1.5);
        const k = randomArray(kn, 2 + S);
        const v = randomArray(kn, 3 + hd);
        const dout = randomArray(qn, 4);
        const past = S - T;
        const mask = new Float32Array(B * T * S);
        for (let b = 0; b < B; b++) for (let i = 0; i < T; i++) for (let j = 0; j < S; j++) mask[(b * T + i) * S + j] = j <= past + i && j >= c.pad[b] ? 0 : -1e9;
        // Lay every operand out in one heap, as the wasm heap holds them.
        const sizes = [qn, kn, kn, B * T * S, qn, B * nh * T, qn, qn, kn, kn];
        const offs: number[] = [];
        let at = 3;
        for (const n of sizes) {
          offs.push(at);
          at += n + 5;
        }
        const heap = new Float32Array(at);
        heap.set(q, offs[0]);
        heap.set(k, offs[1]);
        heap.set(v, offs[2]);
        heap.set(mask, offs[3]);
        heap.set(dout, offs[6]);
        const dims = Float64Array.of(B, T, S, nh, nkv, hd);
        addon.attentionForward!(heap, dims, offs[0], offs[1], offs[2], offs[3], offs[4], offs[5]);
        addon.attentionBackward!(heap, dims, offs[0], offs[1], offs[2], offs[3], offs[4], offs[5], offs[6], offs[7], offs[8], offs[9]);
        const want = reference(c, q, k, v, mask, dout);
        const view = (i: number) => heap.subarray(offs[i], offs[i] + sizes[i]);
        expect(maxRel(view(4), want.out)).toBeLessThan(2e-5);
        expect(maxRel(view(7), want.dq)).toBeLessThan(2e-5);
        expect(maxRel(view(8), want.dk)).toBeLessThan(2e-5);
        expect(maxRel(view(9), want.dv)).toBeLessThan(2e-5);
      });
    }
  });
}

it('refuses operands outside the heap', () => {
  expect(() => addon.attentionForward!(new Float32Array(10), Float64Array.of(1, 4, 4, 2, 1, 8), 0, 0, 0, 0, 0, 0)).toThrow('rpv attention: attentionForward: q lies outside the heap');
});

describe('fused attention in the model', () => {
  it('gives the losses and gradients of tfjs attention, with left padding and LoRA dropout', async () => {
    await initBackend({ backend: 'wasm', log: null });
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'rpv-fused-')), 'm');
    await writeTinyModel(dir, { hiddenSize: 48, numLayers: 2, numHeads: 6, numKvHeads: 2, initStd: 0.2, seed: 4 });
    const model = await loadModel(dir, { log: null });
    model.addLora({ rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q', 'k', 'v', 'o'], seed: 1 });
    const tf = model.tf;
    const rng = seededRandom(2);
    for (const p of model.loraPairs()) tf.tidy(() => p.bT.assign(tf.tensor(rng.normal(p.bT.size, 0.2), p.bT.shape)));
    const B = 2;
    const T = 60;
    const ids = Int32Array.from({ length: B * T }, (_, i) => 3 + ((i * 37) % 250));
    const labels = Int32Array.from(ids, (id, i) => (i % T < 5 ? -100 : id));
    const mask = Int32Array.from({ length: B * T }, (_, i) => (i >= T && i < T + 4 ? 0 : 1));
    for (let i = T; i < T + 5; i++) labels[i] = -100;
    const run = async () => {
      const vars = model.trainableVariables();
      const { value, grads } = tf.variableGrads(() => {
        const r = model.computeLoss({ inputIds: ids, batch: B, attentionMask: mask }, labels, { training: true, seed: 3 });
        return tf.div(r.sum, r.count) as tfc.Scalar;
      }, vars);
      const out = { loss: (await value.data())[0], grads: await Promise.all(vars.map(async (v) => (await grads[v.name].data()) as Float32Array)) };
      tf.dispose([value, ...Object.values(grads)]);
      return out;
    };
    expect(nativeAttentionAvailable()).toBe(true);
    const fused = await run();
    process.env.RPV_FUSED_ATTENTION = '0';
    try {
      const plain = await run();
      expect(Math.abs(fused.loss - plain.loss) / plain.loss).toBeLessThan(1e-5);
      fused.grads.forEach((g, i) => expect(maxRel(g, plain.grads[i]), `variable ${i}`).toBeLessThan(1e-5));
    } finally {
      delete process.env.RPV_FUSED_ATTENTION;
    }
    model.dispose();
  });
});
