/**
 * AdamW (Loshchilov & Hutter) as torch.optim.AdamW computes it: decoupled weight decay
 * `p -= lr * wd * p`, then `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`, with a
 * step count per parameter (a parameter that joins later, e.g. LoRA after a projector-only
 * warm-up, starts its bias correction at 1). Biases, norm weights and other 1-D parameters get no
 * weight decay (the Hugging Face Trainer's and nanoGPT's rule). Its state saves to and loads from
 * plain Float32Arrays, bit-exact, so a resumed run continues identically.
 */
import * as tf from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** One trainable parameter. */
export interface Param {
  /** Unique name, used in the saved state (e.g. the PEFT key). */
  name: string;
  variable: tf.Variable;
  /** Parameter group: the trainer gives each group its own learning rate. */
  group: string;
  /** Weight decay applies (default: rank >= 2 and the name has no `bias`/`norm`). */
  decay?: boolean;
}

/** Default weight-decay rule: matrices decay; biases, norms and vectors do not. */
export function decays(name: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && !/bias|norm/i.test(name);
}

export interface AdamWState {
  /** Per parameter: step count and first/second moments, in the parameters' order. */
  params: { name: string; step: number; m: Float32Array; v: Float32Array }[];
}

interface Slot {
  param: Param;
  decay: boolean;
  step: number;
  m: tf.Variable;
  v: tf.Variable;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly slots: Slot[];

  constructor(params: Param[], { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01 }: AdamWOptions = {}) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    const seen = new Set<string>();
    this.slots = params.map((param) => {
      if (seen.has(param.name)) throw new RpvError(`AdamW: parameter ${param.name} given twice`);
      seen.add(param.name);
      return {
        param,
        decay: param.decay ?? decays(param.name, param.variable.shape),
        step: 0,
        m: tf.tidy(() => tf.variable(tf.zerosLike(param.variable), false)),
        v: tf.tidy(() => tf.variable(tf.zerosLike(param.variable), false)),
      };
    });
  }

  /** Names of the parameters that get weight decay (for `--dry-run` and tests). */
  decayedNames(): string[] {
    return this.slots.filter((s) => s.decay).map((s) => s.param.name);
  }

  /**
   * Apply one update. `grads` maps parameter names to gradients; a parameter without a gradient is
   * left untouched, its step count too (as torch does for `grad is None`). `lrFor(group)` gives
   * each group's learning rate.
   */
  step(grads: Map<string, tf.Tensor>, lrFor: (group: string) => number): void {
    for (const slot of this.slots) {
      const g = grads.get(slot.param.name);
      if (!g) continue;
      slot.step += 1;
      const lr = lrFor(slot.param.group);
      const bc1 = 1 - Math.pow(this.beta1, slot.step);
      const bc2 = 1 - Math.pow(this.beta2, slot.step);
      tf.tidy(() => {
        const m = tf.add(tf.mul(slot.m, this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(slot.v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        slot.m.assign(m);
        slot.v.assign(v);
        let p: tf.Tensor = slot.param.variable;
        if (slot.decay && this.weightDecay > 0) p = tf.mul(p, 1 - lr * this.weightDecay);
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), this.eps);
        p = tf.sub(p, tf.mul(tf.div(m, denom), lr / bc1));
        slot.param.variable.assign(p);
      });
    }
  }

  async state(): Promise<AdamWState> {
    const params = [];
    for (const s of this.slots) {
      params.push({
        name: s.param.name,
        step: s.step,
        m: new Float32Array(await s.m.data()),
        v: new Float32Array(await s.v.data()),
      });
    }
    return { params };
  }

  /** Restore a saved state; names, order and sizes must match the parameters given. */
  loadState(state: AdamWState): void {
    const byName = new Map(state.params.map((p) => [p.name, p]));
    for (const slot of this.slots) {
      const saved = byName.get(slot.param.name);
      if (!saved) throw new RpvError(`AdamW: saved optimizer state has no entry for ${slot.param.name}`);
      if (saved.m.length !== slot.m.size || saved.v.length !== slot.v.size) {
        throw new RpvError(
          `AdamW: saved optimizer state for ${slot.param.name} has ${saved.m.length} values, expected ${slot.m.size}`,
        );
      }
      slot.step = saved.step;
      tf.tidy(() => {
        slot.m.assign(tf.tensor(saved.m, slot.m.shape, 'float32'));
        slot.v.assign(tf.tensor(saved.v, slot.v.shape, 'float32'));
      });
    }
    if (byName.size !== this.slots.length) {
      const known = new Set(this.slots.map((s) => s.param.name));
      const extra = [...byName.keys()].filter((k) => !known.has(k));
      throw new RpvError(`AdamW: saved optimizer state has parameters this run does not train: ${extra.slice(0, 3).join(', ')}`);
    }
  }

  dispose(): void {
    for (const s of this.slots) {
      s.m.dispose();
      s.v.dispose();
    }
  }
}

/**
 * Scale gradients in place so their global L2 norm is at most `maxNorm` (torch's
 * `clip_grad_norm_`: factor `maxNorm / (norm + 1e-6)`, only when below 1). Returns the norm
 * before clipping. `maxNorm <= 0` only measures.
 */
export async function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): Promise<number> {
  if (grads.size === 0) return 0;
  const normT = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
  const norm = (await normT.data())[0]!;
  normT.dispose();
  if (maxNorm > 0 && Number.isFinite(norm)) {
    const factor = maxNorm / (norm + 1e-6);
    if (factor < 1) {
      for (const [name, g] of grads) {
        grads.set(name, tf.mul(g, factor));
        g.dispose();
      }
    }
  }
  return norm;
}
