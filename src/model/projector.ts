/**
 * Video projector `mlp2x_gelu` (as in LLaVA): Linear(featureDim, hidden), GELU (exact, erf),
 * Linear(hidden, hidden). Maps frame feature tokens to the language model's embedding space.
 * `internvl_mlp1` is InternVL's `mlp1`: the same behind a LayerNorm(featureDim) (eps 1e-5, with
 * weight and bias, trained with the rest).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { seededRandom } from '../util/random.js';
import { variableName } from './ops.js';

export interface ProjectorConfig {
  /** `mlp2x_gelu`, or `internvl_mlp1` (a LayerNorm first). */
  type: 'mlp2x_gelu' | 'internvl_mlp1';
  featureDim: number;
  hiddenSize: number;
}

/** Trainable weights, stored transposed ([in, out]) for plain matmuls. Saved as PyTorch [out, in]. */
export interface Projector {
  config: ProjectorConfig;
  w1T: tfc.Variable;
  b1: tfc.Variable;
  w2T: tfc.Variable;
  b2: tfc.Variable;
  /** internvl_mlp1: the LayerNorm's weight and bias (featureDim). */
  lnW?: tfc.Variable;
  lnB?: tfc.Variable;
}

/** nn.LayerNorm's default eps, as InternVL's mlp1 has it. */
export const MLP1_LAYERNORM_EPS = 1e-5;

/** Initialise as torch.nn.Linear does: U(-1/sqrt(in), 1/sqrt(in)) for weights and biases. */
export function createProjector(tf: typeof tfc, config: ProjectorConfig, seed = 0): Projector {
  if (config.type !== 'mlp2x_gelu' && config.type !== 'internvl_mlp1') throw new RpvError(`projector: unsupported type ${JSON.stringify(config.type)} (supported: mlp2x_gelu, internvl_mlp1)`);
  const rng = seededRandom(seed ^ 0x5eed);
  const { featureDim: d, hiddenSize: h } = config;
  const b1 = 1 / Math.sqrt(d);
  const b2 = 1 / Math.sqrt(h);
  const ln = config.type === 'internvl_mlp1'
    ? {
        lnW: tf.tidy(() => tf.variable(tf.ones([d]), true, variableName('mlp1.0.weight'))),
        lnB: tf.tidy(() => tf.variable(tf.zeros([d]), true, variableName('mlp1.0.bias'))),
      }
    : {};
  return {
    config,
    ...ln,
    w1T: tf.tidy(() => tf.variable(tf.tensor2d(rng.uniform(d * h, -b1, b1), [d, h]), true, variableName('projector.0.weight'))),
    b1: tf.tidy(() => tf.variable(tf.tensor1d(rng.uniform(h, -b1, b1)), true, variableName('projector.0.bias'))),
    w2T: tf.tidy(() => tf.variable(tf.tensor2d(rng.uniform(h * h, -b2, b2), [h, h]), true, variableName('projector.2.weight'))),
    b2: tf.tidy(() => tf.variable(tf.tensor1d(rng.uniform(h, -b2, b2)), true, variableName('projector.2.bias'))),
  };
}

/** Exact GELU: 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU() by default. */
export function gelu(tf: typeof tfc, x: tfc.Tensor): tfc.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** features [N, featureDim] -> [N, hidden]. */
export function project(tf: typeof tfc, p: Projector, features: tfc.Tensor2D): tfc.Tensor2D {
  return tf.tidy(() => {
    if (features.shape[1] !== p.config.featureDim) {
      throw new RpvError(`projector: feature size ${features.shape[1]} does not match the projector's featureDim ${p.config.featureDim}`);
    }
    let x: tfc.Tensor2D = features;
    if (p.lnW && p.lnB) {
      // LayerNorm over the features, plain ops so weight and bias get gradients.
      const centred = tf.sub(x, tf.mean(x, -1, true));
      const r = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), MLP1_LAYERNORM_EPS));
      x = tf.add(tf.mul(tf.mul(centred, r), p.lnW), p.lnB) as tfc.Tensor2D;
    }
    const h = gelu(tf, tf.add(tf.matMul(x, p.w1T), p.b1)) as tfc.Tensor2D;
    return tf.add(tf.matMul(h, p.w2T), p.b2) as tfc.Tensor2D;
  });
}

/** w1T, b1, w2T, b2, then the LayerNorm's weight and bias when there is one. */
export function projectorVariables(p: Projector): tfc.Variable[] {
  return p.lnW && p.lnB ? [p.w1T, p.b1, p.w2T, p.b2, p.lnW, p.lnB] : [p.w1T, p.b1, p.w2T, p.b2];
}

/**
 * The projector's tensors as saved, PyTorch names and layout ([out, in]) with the variable each
 * comes from and whether it is stored transposed: `projector.{0,2}.*` for mlp2x_gelu, InternVL's
 * `mlp1.{0,1,3}.*` for internvl_mlp1.
 */
export function projectorTensorNames(p: Projector): { name: string; variable: tfc.Variable; shape: number[]; transposed: boolean }[] {
  const { featureDim: d, hiddenSize: h } = p.config;
  const mlp1 = p.config.type === 'internvl_mlp1';
  const out = [
    { name: mlp1 ? 'mlp1.1.weight' : 'projector.0.weight', variable: p.w1T, shape: [h, d], transposed: true },
    { name: mlp1 ? 'mlp1.1.bias' : 'projector.0.bias', variable: p.b1, shape: [h], transposed: false },
    { name: mlp1 ? 'mlp1.3.weight' : 'projector.2.weight', variable: p.w2T, shape: [h, h], transposed: true },
    { name: mlp1 ? 'mlp1.3.bias' : 'projector.2.bias', variable: p.b2, shape: [h], transposed: false },
  ];
  if (p.lnW && p.lnB) {
    out.push({ name: 'mlp1.0.weight', variable: p.lnW, shape: [d], transposed: false }, { name: 'mlp1.0.bias', variable: p.lnB, shape: [d], transposed: false });
  }
  return out;
}
