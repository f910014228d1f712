/**
 * One pre-norm transformer block for encoders, built from switches as timm's vision_transformer
 * `Block` is: x += ls1 · attn(norm1(x)); x += ls2 · mlp(norm2(x)), with
 *   - norm: LayerNorm with bias (CLIP, SigLIP, InternViT-300M) or RMSNorm (InternViT-6B);
 *   - attention: separate q/k/v projections or one fused qkv (split as [q | k | v] rows, as
 *     InternViT's `qkv(x).reshape(B, N, 3, heads, hd)`), optional q/k RMSNorm over all heads
 *     (InternViT-6B's qk_normalization), non-causal, scale head_dim^-0.5;
 *   - MLP fc1 -> GELU (erf, tanh or quick) -> fc2;
 *   - layer scale (InternViT's ls1/ls2) or none.
 * Weights are frozen linears (src/model/frozen.ts): tfjs tensors or mapped files used in place.
 * The residual structure is `residualBlock`, which the decoder's layer (decoder.ts) also runs
 * through with its own sublayers (RMSNorm, rotary attention with LoRA and KV cache, SwiGLU).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { attend } from './attend.js';
import type { FrozenLinear } from './frozen.js';
import { gelu, type GeluKind } from './gelu.js';
import { layerNorm } from './layernorm.js';
import { rmsNorm } from './rmsnorm.js';

export interface NormWeights {
  kind: 'layer' | 'rms';
  weight: tfc.Tensor1D;
  /** LayerNorm only. */
  bias?: tfc.Tensor1D;
  eps: number;
}

export interface BlockWeights {
  norm1: NormWeights;
  norm2: NormWeights;
  /** Either qkv (fused, [3 * heads * hd, width]) or q, k and v. */
  qkv?: FrozenLinear;
  q?: FrozenLinear;
  k?: FrozenLinear;
  v?: FrozenLinear;
  /** Output projection. */
  o: FrozenLinear;
  qNorm?: NormWeights;
  kNorm?: NormWeights;
  fc1: FrozenLinear;
  fc2: FrozenLinear;
  ls1?: tfc.Tensor1D;
  ls2?: tfc.Tensor1D;
}

export interface BlockShape {
  /** Sequences in the batch; x holds batch * tokens rows. */
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
  act: GeluKind;
}

export function applyNorm(tf: typeof tfc, x: tfc.Tensor, n: NormWeights): tfc.Tensor {
  return n.kind === 'layer' ? layerNorm(tf, x, n.weight, n.bias, n.eps) : rmsNorm(tf, x, n.weight, n.eps);
}

/** q, k, v [N, heads * hd] each, from a fused projection or three. */
export function projectQkv(tf: typeof tfc, x: tfc.Tensor2D, w: Pick<BlockWeights, 'qkv' | 'q' | 'k' | 'v'>): [tfc.Tensor2D, tfc.Tensor2D, tfc.Tensor2D] {
  if (w.qkv) {
    const width = w.qkv.outFeatures / 3;
    return tf.split(w.qkv.forward(x), [width, width, width], 1) as [tfc.Tensor2D, tfc.Tensor2D, tfc.Tensor2D];
  }
  return [w.q!.forward(x), w.k!.forward(x), w.v!.forward(x)];
}

/**
 * The residual pre-norm block every model here is made of, its sublayers given as functions:
 *   mid = x + ls1 · mixer(norm1(x)); out = mid + ls2 · ffn(norm2(mid))   (ls absent: no scale).
 * The decoder (decoder.ts: RMSNorm, rotary attention with LoRA and KV cache, SwiGLU) and the
 * encoder towers (encoderBlock below) both run through it.
 */
export interface ResidualParts {
  norm1: (x: tfc.Tensor2D) => tfc.Tensor2D;
  mixer: (h: tfc.Tensor2D) => tfc.Tensor2D;
  norm2: (x: tfc.Tensor2D) => tfc.Tensor2D;
  ffn: (h: tfc.Tensor2D) => tfc.Tensor2D;
  ls1?: tfc.Tensor1D;
  ls2?: tfc.Tensor1D;
}

export function residualBlock(tf: typeof tfc, x: tfc.Tensor2D, p: ResidualParts): tfc.Tensor2D {
  const a = p.mixer(p.norm1(x));
  const mid = tf.add(x, p.ls1 ? tf.mul(a, p.ls1) : a) as tfc.Tensor2D;
  const m = p.ffn(p.norm2(mid));
  return tf.add(mid, p.ls2 ? tf.mul(m, p.ls2) : m) as tfc.Tensor2D;
}

/** x [batch * tokens, width] -> the block's output, same shape. Untaped use (inference) or taped: every op has a gradient for x. */
export function encoderBlock(tf: typeof tfc, x: tfc.Tensor2D, w: BlockWeights, s: BlockShape): tfc.Tensor2D {
  const shape = { batch: s.batch, queries: s.tokens, keys: s.tokens, heads: s.heads, kvHeads: s.heads, headDim: s.headDim };
  return residualBlock(tf, x, {
    norm1: (v) => applyNorm(tf, v, w.norm1) as tfc.Tensor2D,
    mixer: (h) => {
      let [q, k, v] = projectQkv(tf, h, w);
      if (w.qNorm) q = applyNorm(tf, q, w.qNorm) as tfc.Tensor2D;
      if (w.kNorm) k = applyNorm(tf, k, w.kNorm) as tfc.Tensor2D;
      return w.o.forward(attend(tf, q, k, v, shape, { causal: false, scale: s.headDim ** -0.5 }));
    },
    norm2: (v) => applyNorm(tf, v, w.norm2) as tfc.Tensor2D,
    ffn: (h) => w.fc2.forward(gelu(tf, w.fc1.forward(h), s.act) as tfc.Tensor2D),
    ls1: w.ls1,
    ls2: w.ls2,
  });
}
