/**
 * Small tfjs helpers the wasm backend needs: it has no UnsortedSegmentSum, so tf.gather has no
 * gradient there. gatherRows routes its gradient through ScatterNd (which wasm has), summing
 * rows picked more than once.
 */
import type * as tfc from '@tensorflow/tfjs-core';

/** x [R, C], rows [M] -> x[rows] [M, C], differentiable in x on every backend. */
export function gatherRows(tf: typeof tfc, x: tfc.Tensor2D, rows: Int32Array): tfc.Tensor2D {
  const idx = tf.tensor1d(rows, 'int32');
  const shape = x.shape;
  const f = tf.customGrad(((input: tfc.Tensor, save: tfc.GradSaveFunc) => {
    save([idx]);
    return {
      value: tf.gather(input, idx),
      gradFunc: (dy: tfc.Tensor, saved: tfc.Tensor[]) => tf.scatterND(tf.expandDims(saved[0], 1), dy, shape),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x) as tfc.Tensor2D;
}

let variableCounter = 0;
/**
 * A readable and process-unique tfjs variable name: tfjs refuses two variables with one name, and
 * two models (e.g. a base and a merged copy) may hold the same LoRA module.
 */
export function variableName(base: string): string {
  return `${base}_${variableCounter++}`;
}
