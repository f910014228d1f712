// An independent float64 implementation of the three towers, written from the published modelling
// files (transformers' modeling_clip.py and modeling_siglip.py, OpenGVLab's modeling_intern_vit.py
// and modeling_internvl_chat.py) with plain loops over the safetensors as stored. Returns
// transformers' hidden_states (index 0 = the encoder's input) and applies the feature settings the
// way the published code does (InternVL's pixel_shuffle as its view / permute steps).
import { readSafetensors } from '../../src/util/safetensors.js';

type Vec = Float64Array<ArrayBufferLike>;
export type Family = 'clip' | 'siglip' | 'internvit';

export interface RefConfig {
  family: Family;
  hidden: number;
  heads: number;
  layers: number;
  image: number;
  patch: number;
  eps: number;
  act: string;
  /** internvit: norm_type rms_norm and qk_normalization. */
  rms?: boolean;
  qkNorm?: boolean;
}

/** erf to ~1e-15 (Taylor series near 0, continued fraction of erfc beyond). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 80; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz from the tail).
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export function act(kind: string, x: number): number {
  if (kind === 'quick_gelu') return x / (1 + Math.exp(-1.702 * x));
  if (kind === 'gelu') return 0.5 * x * (1 + erf(x / Math.SQRT2));
  // gelu_pytorch_tanh
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

export async function readWeights(file: string): Promise<Map<string, Vec>> {
  const f = await readSafetensors(file);
  const out = new Map<string, Vec>();
  for (const [name, t] of f.tensors) out.set(name, Float64Array.from(t.data));
  return out;
}

function layerNorm(x: Vec, rows: number, D: number, w: Vec, b: Vec | undefined, eps: number, rms: boolean): Vec {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    if (!rms) {
      for (let d = 0; d < D; d++) mean += x[r * D + d];
      mean /= D;
    }
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[r * D + d] - mean) ** 2;
    v /= D;
    const inv = 1 / Math.sqrt(v + eps);
    for (let d = 0; d < D; d++) out[r * D + d] = (x[r * D + d] - mean) * inv * w[d] + (b ? b[d] : 0);
  }
  return out;
}

/** y = x W^T + b, W [out, in]. */
function linear(x: Vec, rows: number, inF: number, W: Vec, b: Vec | undefined): Vec {
  const outF = W.length / inF;
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * W[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

function attention(q: Vec, k: Vec, v: Vec, T: number, H: number, hd: number): Vec {
  const D = H * hd;
  const out = new Float64Array(T * D);
  const scale = hd ** -0.5;
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < T; i++) {
      const s = new Float64Array(T);
      let max = -Infinity;
      for (let j = 0; j < T; j++) {
        let dot = 0;
        for (let e = 0; e < hd; e++) dot += q[i * D + h * hd + e] * scale * k[j * D + h * hd + e];
        s[j] = dot;
        max = Math.max(max, dot);
      }
      let sum = 0;
      for (let j = 0; j < T; j++) sum += (s[j] = Math.exp(s[j] - max));
      for (let j = 0; j < T; j++) for (let e = 0; e < hd; e++) out[i * D + h * hd + e] += (s[j] / sum) * v[j * D + h * hd + e];
    }
  }
  return out;
}

/** hidden_states for one frame (pixels [3, S, S]): [layers + 1] arrays of [T, D]. */
export function referenceHiddenStates(c: RefConfig, W: Map<string, Vec>, pixels: Float32Array): Vec[] {
  const g = (n: string) => {
    const t = W.get(n);
    if (!t) throw new Error(`reference: missing ${n}`);
    return t;
  };
  const D = c.hidden;
  const P = c.patch;
  const grid = Math.floor(c.image / P);
  const N = grid * grid;
  const cls = c.family !== 'siglip';
  const T = N + (cls ? 1 : 0);
  const pre = c.family === 'internvit' ? '' : 'vision_model.';
  // Conv2d(3, D, P, stride P) over the image.
  const cw = g(`${pre}embeddings.patch_embedding.weight`);
  const cb = c.family === 'clip' ? undefined : g(`${pre}embeddings.patch_embedding.bias`);
  let x: Vec = new Float64Array(T * D);
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const row = (cls ? 1 : 0) + gy * grid + gx;
      for (let d = 0; d < D; d++) {
        let s = cb ? cb[d] : 0;
        for (let ch = 0; ch < 3; ch++) {
          for (let y = 0; y < P; y++) {
            for (let xx = 0; xx < P; xx++) s += cw[((d * 3 + ch) * P + y) * P + xx] * pixels[(ch * c.image + gy * P + y) * c.image + gx * P + xx];
          }
        }
        x[row * D + d] = s;
      }
    }
  }
  if (cls) x.set(g(`${pre}embeddings.class_embedding`).subarray(0, D), 0);
  const pos = g(c.family === 'internvit' ? 'embeddings.position_embedding' : `${pre}embeddings.position_embedding.weight`);
  for (let i = 0; i < T * D; i++) x[i] += pos[i];
  if (c.family === 'clip') x = layerNorm(x, T, D, g(`${pre}pre_layrnorm.weight`), g(`${pre}pre_layrnorm.bias`), c.eps, false);
  const states = [x];
  const hd = D / c.heads;
  for (let l = 0; l < c.layers; l++) {
    const p = `${pre}encoder.layers.${l}`;
    let h: Vec;
    if (c.family === 'internvit') {
      const norm = (name: string, v: Vec) => layerNorm(v, T, D, g(`${name}.weight`), c.rms ? undefined : g(`${name}.bias`), c.eps, !!c.rms);
      const n1 = norm(`${p}.norm1`, x);
      const qkv = linear(n1, T, D, g(`${p}.attn.qkv.weight`), g(`${p}.attn.qkv.bias`));
      // reshape(B, N, 3, heads, hd): each row is [q | k | v].
      let q: Vec = new Float64Array(T * D);
      let k: Vec = new Float64Array(T * D);
      const v = new Float64Array(T * D);
      for (let t = 0; t < T; t++) {
        q.set(qkv.subarray(t * 3 * D, t * 3 * D + D), t * D);
        k.set(qkv.subarray(t * 3 * D + D, t * 3 * D + 2 * D), t * D);
        v.set(qkv.subarray(t * 3 * D + 2 * D, t * 3 * D + 3 * D), t * D);
      }
      if (c.qkNorm) {
        q = layerNorm(q, T, D, g(`${p}.attn.q_norm.weight`), undefined, c.eps, true);
        k = layerNorm(k, T, D, g(`${p}.attn.k_norm.weight`), undefined, c.eps, true);
      }
      const a = linear(attention(q, k, v, T, c.heads, hd), T, D, g(`${p}.attn.proj.weight`), g(`${p}.attn.proj.bias`));
      const ls1 = g(`${p}.ls1`);
      h = x.map((val, i) => val + a[i] * ls1[i % D]);
      const f1 = linear(norm(`${p}.norm2`, h), T, D, g(`${p}.mlp.fc1.weight`), g(`${p}.mlp.fc1.bias`)).map((z) => act(c.act, z));
      const m = linear(f1, T, f1.length / T, g(`${p}.mlp.fc2.weight`), g(`${p}.mlp.fc2.bias`));
      const ls2 = g(`${p}.ls2`);
      h = h.map((val, i) => val + m[i] * ls2[i % D]);
    } else {
      const n1 = layerNorm(x, T, D, g(`${p}.layer_norm1.weight`), g(`${p}.layer_norm1.bias`), c.eps, false);
      const proj = (n: string, v: Vec) => linear(v, T, D, g(`${p}.self_attn.${n}.weight`), g(`${p}.self_attn.${n}.bias`));
      const a = proj('out_proj', attention(proj('q_proj', n1), proj('k_proj', n1), proj('v_proj', n1), T, c.heads, hd));
      h = x.map((val, i) => val + a[i]);
      const n2 = layerNorm(h, T, D, g(`${p}.layer_norm2.weight`), g(`${p}.layer_norm2.bias`), c.eps, false);
      const f1 = linear(n2, T, D, g(`${p}.mlp.fc1.weight`), g(`${p}.mlp.fc1.bias`)).map((z) => act(c.act, z));
      const m = linear(f1, T, f1.length / T, g(`${p}.mlp.fc2.weight`), g(`${p}.mlp.fc2.bias`));
      h = h.map((val, i) => val + m[i]);
    }
    x = h;
    states.push(x);
  }
  return states;
}

/** A contiguous [a, b, c, d] array permuted (0, 2, 1, 3), as torch's .permute().contiguous(). */
function permute0213(x: Vec, a: number, b: number, c: number, d: number): Vec {
  const out = new Float64Array(x.length);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) for (let k = 0; k < c; k++) for (let l = 0; l < d; l++) out[((i * c + k) * b + j) * d + l] = x[((i * b + j) * c + k) * d + l];
  return out;
}

/** InternVL's pixel_shuffle (ps_version v2) on x [n, w, h, c], step by step; views are free on contiguous data. */
export function referencePixelShuffle(x: Vec, n: number, w: number, h: number, c: number, s: number): Vec {
  // view(n, w, h*s, c/s); permute(0, 2, 1, 3) -> [n, h*s, w, c/s]
  const y = permute0213(x, n, w, h * s, c / s);
  // view(n, h*s, w*s, c/s²); permute(0, 2, 1, 3) -> [n, w*s, h*s, c/s²]
  return permute0213(y, n, h * s, w * s, c / (s * s));
}

export interface RefSettings {
  layer: number;
  tokens: 'patches' | 'cls' | 'mean';
  pool: number;
  shuffle: number;
}

/** Features of one frame from its hidden states, as LLaVA / InternVL select them. */
export function referenceFeatures(c: RefConfig, states: Vec[], s: RefSettings): Vec {
  const D = c.hidden;
  const state = states[s.layer < 0 ? states.length + s.layer : s.layer];
  const first = c.family === 'siglip' ? 0 : 1;
  const grid = Math.floor(c.image / c.patch);
  const patches = state.subarray(first * D);
  if (s.tokens === 'cls') return state.slice(0, D);
  if (s.tokens === 'mean') {
    const out = new Float64Array(D);
    for (let t = 0; t < grid * grid; t++) for (let d = 0; d < D; d++) out[d] += patches[t * D + d] / (grid * grid);
    return out;
  }
  let x: Vec = Float64Array.from(patches);
  let g = grid;
  if (s.pool > 1) {
    // nn.functional.avg_pool2d(kernel n, stride n) over the [D, g, g] grid.
    const n = s.pool;
    const o = g / n;
    const y = new Float64Array(o * o * D);
    for (let r = 0; r < o; r++) for (let cc = 0; cc < o; cc++) for (let d = 0; d < D; d++) {
      let sum = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sum += x[((r * n + i) * g + cc * n + j) * D + d];
      y[(r * o + cc) * D + d] = sum / (n * n);
    }
    x = y;
    g = o;
  }
  if (s.shuffle !== 1) x = referencePixelShuffle(x, 1, g, g, D, s.shuffle);
  return x;
}
