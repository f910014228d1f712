/**
 * Video projector `mlp2x_gelu` (as in LLaVA): Linear(featureDim, hidden), GELU (exact, erf),
 * Linear(hidden, hidden). Maps frame feature tokens to the language model's embedding space.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { seededRandom } from '../util/random.js';
import { variableName } from './ops.js';

export interface ProjectorConfig {
  /** Only `mlp2x_gelu`. */
  type: 'mlp2x_gelu';
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
}

/** Initialise as torch.nn.Linear does: U(-1/sqrt(in), 1/sqrt(in)) for weights and biases. */
export function createProjector(tf: typeof tfc, config: ProjectorConfig, seed = 0): Projector {
  if (config.type !== 'mlp2x_gelu') throw new RpvError(`projector: unsupported type ${JSON.stringify(config.type)} (supported: mlp2x_gelu)`);
  const rng = seededRandom(seed ^ 0x5eed);
  const { featureDim: d, hiddenSize: h } = config;
  const b1 = 1 / Math.sqrt(d);
  const b2 = 1 / Math.sqrt(h);
  return {
    config,
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
    const h = gelu(tf, tf.add(tf.matMul(features, p.w1T), p.b1)) as tfc.Tensor2D;
    return tf.add(tf.matMul(h, p.w2T), p.b2) as tfc.Tensor2D;
  });
}

export function projectorVariables(p: Projector): tfc.Variable[] {
  return [p.w1T, p.b1, p.w2T, p.b2];
}
