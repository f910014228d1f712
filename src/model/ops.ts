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

/**
 * tfjs saves (copies) every input of every op recorded on the gradient tape, frozen weights
 * included: a plain x @ W inside tf.variableGrads copies W each step, and the output projection
 * copies the whole embedding table. Ops run inside a customGrad's forward are not recorded, so
 * the helpers below compute with frozen tensors there and give the gradient for the activation
 * only, from tensors they hold by closure (frozen weights, per-pass constants, and activations that
 * live until the backward pass ends, as every intermediate of tf.variableGrads does).
 */

/** x [N, in] @ W (W [in, out]; or W [out, in] with transposeW) + bias, gradient for x only. */
export function frozenMatMul(tf: typeof tfc, x: tfc.Tensor2D, w: tfc.Tensor2D, { transposeW = false, bias }: { transposeW?: boolean; bias?: tfc.Tensor1D } = {}): tfc.Tensor2D {
  const f = tf.customGrad(((input: tfc.Tensor2D) => {
    const y = tf.matMul(input, w, false, transposeW);
    return {
      value: bias ? tf.add(y, bias) : y,
      gradFunc: (dy: tfc.Tensor2D) => tf.matMul(dy, w, false, !transposeW),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x) as tfc.Tensor2D;
}

/** Rows `ids` of a frozen table [R, C] -> [N, C]; nothing to differentiate. */
export function frozenGather(tf: typeof tfc, table: tfc.Tensor2D, ids: Int32Array): tfc.Tensor2D {
  const idx = tf.tensor1d(ids, 'int32');
  const f = tf.customGrad(((i: tfc.Tensor) => ({
    value: tf.gather(table, i),
    gradFunc: () => tf.zerosLike(i),
  })) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(idx) as tfc.Tensor2D;
}
