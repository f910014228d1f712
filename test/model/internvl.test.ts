// An InternVL chat folder end to end (make-tiny-model's internvl-tiny: InternViT + mlp1 + Qwen2 in
// InternVL2_5-1B's layout): rpv's logits, with the tower's features through mlp1 into the language
// model at the <IMG_CONTEXT> positions, against a plain float64 implementation written here from
// the published modelling code (modeling_internvl_chat.py: extract_feature, pixel_shuffle, mlp1,
// the embedding splice; transformers' modeling_qwen2.py for the decoder), reusing the tower's float64
// reference of test/vision. On the native kernels (mapped weights) and on tfjs alone (cpu).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/index.js';
import { loadModel } from '../../src/model/load.js';
import { loadInternVLProjector } from '../../src/model/adapter.js';
import { writeTinyInternVL } from '../../src/model/internvl-tiny.js';
import { parseInternVLConfig } from '../../src/model/internvl.js';
import { promises as fs } from 'node:fs';
import { loadVisionTower } from '../../src/vision/index.js';
import { Mulberry32 } from '../../src/util/random.js';
import { erf, readWeights, referenceFeatures, referenceHiddenStates, type RefConfig } from '../vision/tower-reference.js';

type Vec = Float64Array<ArrayBufferLike>;
const root = mkdtempSync(path.join(tmpdir(), 'rpv-internvl-'));
const dir = path.join(root, 'ivl');
const FRAMES = 2;

/** y [rows, out] = x [rows, in] · Wᵀ + b, W stored [out, in]. */
function linear(x: Vec, rows: number, W: Vec, b: Vec | undefined, inDim: number, outDim: number): Vec {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * W[o * inDim + i]!;
      y[r * outDim + o] = s;
    }
  }
  return y;
}

/** InternVL's mlp1: LayerNorm (eps 1e-5), Linear, GELU (erf), Linear. */
function referenceMlp1(W: Map<string, Vec>, x: Vec, rows: number, d: number, h: number): Vec {
  const n = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i]! / d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - mean) ** 2 / d;
    for (let i = 0; i < d; i++) n[r * d + i] = ((x[r * d + i]! - mean) / Math.sqrt(v + 1e-5)) * W.get('mlp1.0.weight')![i]! + W.get('mlp1.0.bias')![i]!;
  }
  const a = linear(n, rows, W.get('mlp1.1.weight')!, W.get('mlp1.1.bias')!, d, h);
  for (let i = 0; i < a.length; i++) a[i] = 0.5 * a[i]! * (1 + erf(a[i]! / Math.SQRT2));
  return linear(a, rows, W.get('mlp1.3.weight')!, W.get('mlp1.3.bias')!, h, h);
}

function rmsNorm(x: Vec, rows: number, d: number, w: Vec, eps: number): Vec {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[r * d + i]! ** 2 / d;
    const s = 1 / Math.sqrt(ms + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i]! * s * w[i]!;
  }
  return y;
}

/** Qwen2ForCausalLM on input embeddings [T, H]: logits [T, V]. */
function referenceQwen2(W: Map<string, Vec>, llm: Record<string, number>, emb: Vec, T: number): Vec {
  const H = llm.hidden_size!;
  const nh = llm.num_attention_heads!;
  const nkv = llm.num_key_value_heads!;
  const hd = H / nh;
  const I = llm.intermediate_size!;
  const V = llm.vocab_size!;
  const eps = llm.rms_norm_eps!;
  const g = (n: string) => W.get(`language_model.${n}`)!;
  // rotate_half rotary embedding: cos/sin of position · inv_freq, the half repeated.
  const rope = (x: Vec, heads: number) => {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const o = t * heads * hd + h * hd;
        for (let i = 0; i < hd / 2; i++) {
          const ang = t / Math.pow(llm.rope_theta!, (2 * i) / hd);
          const a = x[o + i]!;
          const b = x[o + i + hd / 2]!;
          x[o + i] = a * Math.cos(ang) - b * Math.sin(ang);
          x[o + i + hd / 2] = b * Math.cos(ang) + a * Math.sin(ang);
        }
      }
    }
  };
  let x: Vec = Float64Array.from(emb);
  for (let l = 0; l < llm.num_hidden_layers!; l++) {
    const p = `model.layers.${l}`;
    const n1 = rmsNorm(x, T, H, g(`${p}.input_layernorm.weight`), eps);
    const q = linear(n1, T, g(`${p}.self_attn.q_proj.weight`), g(`${p}.self_attn.q_proj.bias`), H, nh * hd);
    const k = linear(n1, T, g(`${p}.self_attn.k_proj.weight`), g(`${p}.self_attn.k_proj.bias`), H, nkv * hd);
    const v = linear(n1, T, g(`${p}.self_attn.v_proj.weight`), g(`${p}.self_attn.v_proj.bias`), H, nkv * hd);
    rope(q, nh);
    rope(k, nkv);
    const att = new Float64Array(T * nh * hd);
    for (let h = 0; h < nh; h++) {
      const kh = Math.floor(h / (nh / nkv));
      for (let i = 0; i < T; i++) {
        const s = new Float64Array(i + 1);
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[i * nh * hd + h * hd + e]! * k[j * nkv * hd + kh * hd + e]!;
          s[j] = dot / Math.sqrt(hd);
          max = Math.max(max, s[j]!);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += (s[j] = Math.exp(s[j]! - max));
        for (let j = 0; j <= i; j++) for (let e = 0; e < hd; e++) att[i * nh * hd + h * hd + e] += (s[j]! / sum) * v[j * nkv * hd + kh * hd + e]!;
      }
    }
    const o = linear(att, T, g(`${p}.self_attn.o_proj.weight`), undefined, nh * hd, H);
    for (let i = 0; i < x.length; i++) x[i] += o[i]!;
    const n2 = rmsNorm(x, T, H, g(`${p}.post_attention_layernorm.weight`), eps);
    const gate = linear(n2, T, g(`${p}.mlp.gate_proj.weight`), undefined, H, I);
    const up = linear(n2, T, g(`${p}.mlp.up_proj.weight`), undefined, H, I);
    for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
    const down = linear(gate, T, g(`${p}.mlp.down_proj.weight`), undefined, I, H);
    for (let i = 0; i < x.length; i++) x[i] += down[i]!;
  }
  x = rmsNorm(x, T, H, g('model.norm.weight'), eps);
  return linear(x, T, g('lm_head.weight'), undefined, H, V);
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
  }
  return err / scale;
}

const pixels = new Mulberry32(11).normal(FRAMES * 3 * 32 * 32, 1);

beforeAll(async () => {
  await writeTinyInternVL(dir, { preset: 'internvl-tiny', seed: 5, initStd: 0.2 });
});

afterAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`InternVL folder on ${backend === 'wasm' ? 'the native kernels (mapped weights)' : 'tfjs alone (cpu backend)'}`, () => {
    beforeAll(async () => {
      await initBackend({ backend, log: null });
    });

    it('logits with the tower\'s features through mlp1 at <IMG_CONTEXT> equal the float64 reference', async () => {
      const weights = backend === 'wasm' ? 'mapped' : 'tensors';
      const tower = await loadVisionTower(dir, {}, { weights });
      let features: Float32Array;
      try {
        expect(tower.tokensPerFrame).toBe(4);
        expect(tower.width).toBe(128);
        features = await tower.encode(pixels, FRAMES);
      } finally {
        await tower.dispose();
      }
      const model = await loadModel(dir, { weights, log: null });
      try {
        expect(model.internvl?.featureDim).toBe(128);
        expect(model.internvl?.tokensPerFrame).toBe(4);
        await loadInternVLProjector(model);
        const tok = model.tokenizer!;
        const ctx = model.videoTokenId!;
        expect(ctx).toBe(tok.tokenToId('<IMG_CONTEXT>'));
        // InternVL's video prompt: Frame{i}: <img> + 4 x <IMG_CONTEXT> + </img>.
        const ids: number[] = tok.encode('<|im_start|>user\n');
        for (let f = 0; f < FRAMES; f++) ids.push(...tok.encode(`Frame${f + 1}: <img>`), ...Array(4).fill(ctx), ...tok.encode('</img>\n'));
        ids.push(...tok.encode('What is she cooking?<|im_end|>\n<|im_start|>assistant\n'));
        const T = ids.length;
        const logits = model.logits({ inputIds: ids, batch: 1, video: { features: { data: features, shape: [1, FRAMES * 4, 128] } } });
        const got = await logits.data();
        logits.dispose();

        // The reference: tower -> pixel shuffle -> mlp1 -> spliced at <IMG_CONTEXT> -> Qwen2.
        const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { llm_config: Record<string, number>; vision_config: Record<string, number> };
        const W = await readWeights(path.join(dir, 'model.safetensors'));
        const towerW = new Map([...W].filter(([n]) => n.startsWith('vision_model.')).map(([n, v]) => [n.slice('vision_model.'.length), v]));
        const ref: RefConfig = { family: 'internvit', hidden: 32, heads: 4, layers: 3, image: 32, patch: 8, eps: 1e-6, act: 'gelu' };
        const vit = new Float64Array(FRAMES * 4 * 128);
        for (let f = 0; f < FRAMES; f++) {
          const states = referenceHiddenStates(ref, towerW, pixels.subarray(f * 3072, (f + 1) * 3072));
          vit.set(referenceFeatures(ref, states, { layer: -1, tokens: 'patches', pool: 1, shuffle: 0.5 }), f * 4 * 128);
        }
        const H = cfg.llm_config.hidden_size!;
        const projected = referenceMlp1(W, vit, FRAMES * 4, 128, H);
        const table = W.get('language_model.model.embed_tokens.weight')!;
        const emb = new Float64Array(T * H);
        let k = 0;
        for (let t = 0; t < T; t++) {
          if (ids[t] === ctx) emb.set(projected.subarray(k * H, ++k * H), t * H);
          else emb.set(table.subarray(ids[t]! * H, (ids[t]! + 1) * H), t * H);
        }
        expect(k).toBe(FRAMES * 4);
        const want = referenceQwen2(W, cfg.llm_config, emb, T);
        expect(relErr(got, want)).toBeLessThan(1e-4);
      } finally {
        model.dispose();
      }
    });
  });
}

describe('InternVL folder checks', () => {
  it('refuses an InternLM2 language model with the reason', () => {
    expect(() => parseInternVLConfig({ model_type: 'internvl_chat', ps_version: 'v2', vision_config: { hidden_size: 1024, image_size: 448, patch_size: 14 }, llm_config: { architectures: ['InternLM2ForCausalLM'] } }, 'x/config.json')).toThrow(
      "x/config.json: llm_config: InternLM2 language models (InternVL2.5-2B, -8B, -26B) are not supported: rpv's decoder has separate q/k/v and gate/up/down projections, InternLM2 fuses them (wqkv, w1/w2/w3 with interleaved heads); use InternVL2.5-1B or -4B (Qwen2.5)",
    );
  });

  it('refuses a language_model tensor its llm_config does not use, naming it', async () => {
    await initBackend({ backend: 'wasm', log: null });
    const extra = path.join(root, 'extra');
    await writeTinyInternVL(extra, { preset: 'internvl-tiny', seed: 5 });
    const cfg = JSON.parse(readFileSync(path.join(extra, 'config.json'), 'utf8')) as { llm_config: Record<string, unknown> };
    cfg.llm_config.num_hidden_layers = 1;
    await fs.writeFile(path.join(extra, 'config.json'), JSON.stringify(cfg));
    await expect(loadModel(extra, { log: null })).rejects.toThrow(
      `${extra}/config.json: does not fit the weights: 12 tensors in model.safetensors are not used (first: language_model.model.layers.1.input_layernorm.weight; num_hidden_layers is 1, the weights have layer 1)`,
    );
  });
});
