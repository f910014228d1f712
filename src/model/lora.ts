/**
 * LoRA with PEFT semantics: for a frozen linear W (out x in), y = x W^T + b + scaling * (dropout(x) A^T) B^T
 * with A [r, in] kaiming-uniform (a = sqrt(5), as PEFT and torch.nn.Linear initialise it, i.e.
 * U(-1/sqrt(in), 1/sqrt(in))), B [out, r] zeros, scaling = alpha / r, or alpha / sqrt(r) with rslora.
 * Dropout applies to the LoRA branch's input only.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { fmix32, type Mulberry32 } from '../util/random.js';
import { nativeDropoutAvailable, nativeDropoutScale } from '../native/dropout.js';
import { frozenLinear, releasingGrad, variableName } from './ops.js';
import type { FrozenLinear } from './frozen.js';

/** Module short names and their PEFT/HF names. */
export const LORA_MODULES = {
  q: 'q_proj',
  k: 'k_proj',
  v: 'v_proj',
  o: 'o_proj',
  gate: 'gate_proj',
  up: 'up_proj',
  down: 'down_proj',
} as const;
export type LoraModule = keyof typeof LORA_MODULES;

export interface LoraConfig {
  /** Rank r. */
  rank: number;
  /** lora_alpha. */
  alpha: number;
  /** Dropout probability on the LoRA branch's input (training only). */
  dropout: number;
  /** Modules to adapt, short (`q`) or HF (`q_proj`) names. */
  targetModules: (LoraModule | string)[];
  /** rslora: scaling alpha / sqrt(r) instead of alpha / r. */
  useRslora: boolean;
  /** Seed for A's initialisation. */
  seed?: number;
}

export const DEFAULT_LORA: LoraConfig = { rank: 8, alpha: 16, dropout: 0.05, targetModules: ['q', 'k', 'v', 'o'], useRslora: false };

/** Normalise module names to short form (`q_proj` -> `q`), rejecting unknown ones. */
export function normalizeTargetModules(names: string[]): LoraModule[] {
  const out: LoraModule[] = [];
  for (const name of names) {
    const short = (Object.keys(LORA_MODULES) as LoraModule[]).find((k) => k === name || LORA_MODULES[k] === name);
    if (!short) {
      throw new RpvError(`lora: unknown target module ${JSON.stringify(name)} (expected one of ${Object.entries(LORA_MODULES).map(([k, v]) => `${k}/${v}`).join(', ')})`);
    }
    if (!out.includes(short)) out.push(short);
  }
  return out;
}

export function loraScaling(config: Pick<LoraConfig, 'rank' | 'alpha' | 'useRslora'>): number {
  return config.useRslora ? config.alpha / Math.sqrt(config.rank) : config.alpha / config.rank;
}

/** Trainable LoRA pair of one linear. Stored transposed for plain matmuls: aT [in, r], bT [r, out]. */
export interface LoraPair {
  /** PEFT name prefix, e.g. `base_model.model.model.layers.0.self_attn.q_proj`. */
  name: string;
  aT: tfc.Variable;
  bT: tfc.Variable;
  inFeatures: number;
  outFeatures: number;
}

export function createLoraPair(tf: typeof tfc, name: string, inFeatures: number, outFeatures: number, rank: number, rng: Mulberry32): LoraPair {
  const bound = 1 / Math.sqrt(inFeatures);
  const a = rng.uniform(rank * inFeatures, -bound, bound); // [r, in] row-major
  const aT = new Float32Array(inFeatures * rank);
  for (let i = 0; i < rank; i++) for (let j = 0; j < inFeatures; j++) aT[j * rank + i] = a[i * inFeatures + j];
  return {
    name,
    aT: tf.tidy(() => tf.variable(tf.tensor2d(aT, [inFeatures, rank]), true, variableName(`${name}.lora_A`))),
    bT: tf.tidy(() => tf.variable(tf.zeros([rank, outFeatures]), true, variableName(`${name}.lora_B`))),
    inFeatures,
    outFeatures,
  };
}

/** A frozen linear of the base (tfjs tensors or mapped weights: src/model/frozen.ts). */
export type Linear = FrozenLinear;

/** Settings of one forward pass that LoRA branches need. */
export interface LoraRun {
  scaling: number;
  /** Dropout rate; 0 outside training. */
  dropout: number;
  /** Seed for this branch's dropout mask. */
  seed?: number;
}

/**
 * The counter-based draw behind a dropout mask: element i is kept when
 * fmix32((i * 0x9E3779B1) ^ seedMix) >= threshold. Any element's decision depends on its index and
 * the seed alone, so the native kernel (src/native/pointwise.cc) draws the same mask in parallel,
 * and the backward pass draws it again instead of keeping it.
 */
export function dropoutDraw(rate: number, scaling: number, seed: number): { seedMix: number; threshold: number; keep: number } {
  return { seedMix: fmix32(seed >>> 0), threshold: Math.min(Math.floor(rate * 2 ** 32), 2 ** 32 - 1), keep: scaling / (1 - rate) };
}

/**
 * Inverted-dropout mask with the LoRA scaling folded in: each value is 0 (probability `rate`) or
 * scaling / (1 - rate), from dropoutDraw's hash.
 */
export function dropoutMask(size: number, rate: number, scaling: number, seed: number): Float32Array {
  const { seedMix, threshold, keep } = dropoutDraw(rate, scaling, seed);
  const mask = new Float32Array(size);
  for (let i = 0; i < size; i++) mask[i] = fmix32(Math.imul(i, 0x9e3779b1) ^ seedMix) >= threshold ? keep : 0;
  return mask;
}

/**
 * x [N, in] -> x W^T + b + scaling * (dropout(x) A^T) B^T, as one taped op that saves x, A and B
 * only. The frozen W is used by closure: never copied for the backward pass, never differentiated.
 * The dropout mask is drawn again from its seed in the backward pass and the narrow [N, r]
 * intermediate recomputed. With xd = dropout(x) * scaling and h = xd A^T:
 * dB^T = h^T dy, dh = dy B, dA^T = xd^T dh, dx = dy W + (dh A) * mask * scaling.
 * Without dropout the scaling is applied on the [N, r] side instead (h = (x A^T) * scaling,
 * dA^T = x^T (dh * scaling), dx = dy W + (dh * scaling) A): the same products, without three
 * [N, in] multiplies per module and pass.
 */
export function linear(tf: typeof tfc, x: tfc.Tensor2D, lin: Linear, lora?: LoraPair, run?: LoraRun): tfc.Tensor2D {
  if (!lora || !run) return frozenLinear(tf, x, lin);
  if (!(run.dropout > 0)) return scaledLinear(tf, x, lin, lora, run.scaling);
  const shape = x.shape;
  const native = nativeDropoutAvailable();
  const draw = dropoutDraw(run.dropout, run.scaling, run.seed ?? 0);
  // t * mask (scaling folded in), the mask drawn from its seed on every use.
  const scaled = (t: tfc.Tensor): tfc.Tensor => {
    if (native) return nativeDropoutScale(t, draw.seedMix, draw.threshold, draw.keep);
    return tf.mul(t, tf.tensor2d(dropoutMask(t.size, run.dropout, run.scaling, run.seed ?? 0), shape));
  };
  const f = tf.customGrad(((input: tfc.Tensor2D, aT: tfc.Tensor2D, bT: tfc.Tensor2D, save: tfc.GradSaveFunc) => {
    save([input, aT, bT]);
    const y = lin.forward(input);
    return {
      value: tf.add(y, tf.matMul(tf.matMul(scaled(input) as tfc.Tensor2D, aT), bT)),
      gradFunc: releasingGrad(tf, (dyt, [xs, as, bs]) => {
        const dy = dyt as tfc.Tensor2D;
        const xd = scaled(xs) as tfc.Tensor2D;
        const dh = tf.matMul(dy, bs as tfc.Tensor2D, false, true);
        const dB = tf.matMul(tf.matMul(xd, as as tfc.Tensor2D), dy, true, false);
        const dA = tf.matMul(xd, dh, true, false);
        const dx = tf.add(lin.backward(dy), scaled(tf.matMul(dh, as as tfc.Tensor2D, false, true)));
        return [dx, dA, dB];
      }),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x, lora.aT, lora.bT) as tfc.Tensor2D;
}

/** linear() without dropout: the scaling multiplies the narrow [N, r] tensors only. */
function scaledLinear(tf: typeof tfc, x: tfc.Tensor2D, lin: Linear, lora: LoraPair, scaling: number): tfc.Tensor2D {
  const f = tf.customGrad(((input: tfc.Tensor2D, aT: tfc.Tensor2D, bT: tfc.Tensor2D, save: tfc.GradSaveFunc) => {
    save([input, aT, bT]);
    const y = lin.forward(input);
    const h = tf.mul(tf.matMul(input, aT), scaling) as tfc.Tensor2D;
    return {
      value: tf.add(y, tf.matMul(h, bT)),
      gradFunc: releasingGrad(tf, (dyt, [xs, as, bs]) => {
        const dy = dyt as tfc.Tensor2D;
        const xt = xs as tfc.Tensor2D;
        const hs = tf.mul(tf.matMul(xt, as as tfc.Tensor2D), scaling) as tfc.Tensor2D;
        const dhs = tf.mul(tf.matMul(dy, bs as tfc.Tensor2D, false, true), scaling) as tfc.Tensor2D;
        const dB = tf.matMul(hs, dy, true, false);
        const dA = tf.matMul(xt, dhs, true, false);
        const dx = tf.add(lin.backward(dy), tf.matMul(dhs, as as tfc.Tensor2D, false, true));
        return [dx, dA, dB];
      }),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x, lora.aT, lora.bT) as tfc.Tensor2D;
}
