/**
 * Small tfjs helpers: gathers that train on the wasm backend, and the taped wrappers of the frozen
 * base (src/model/frozen.ts).
 *
 * tfjs-wasm has no UnsortedSegmentSum, so tf.gather has no gradient there: gatherRows routes its
 * gradient through ScatterNd (which wasm has), summing rows picked more than once.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { takeRows, takeRowsAvailable } from '../native/take-rows.js';
import type { FrozenLinear, FrozenTable } from './frozen.js';

/** x [R, C], rows [M] -> x[rows] [M, C], differentiable in x on every backend. */
export function gatherRows(tf: typeof tfc, x: tfc.Tensor2D, rows: Int32Array): tfc.Tensor2D {
  const idx = tf.tensor1d(rows, 'int32');
  const shape = x.shape;
  const inHeap = x.dtype === 'float32' && takeRowsAvailable();
  const f = tf.customGrad(((input: tfc.Tensor, save: tfc.GradSaveFunc) => {
    save([idx]);
    return {
      value: inHeap ? takeRows(input as tfc.Tensor2D, rows) : tf.gather(input, idx),
      gradFunc: releasingGrad(tf, (dy, saved) => tf.scatterND(tf.expandDims(saved[0], 1), dy, shape)),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x) as tfc.Tensor2D;
}

/**
 * Wraps a customGrad gradient function so the backward pass frees what it uses. tfjs runs
 * gradient functions outside any tidy scope and keeps every output gradient until the whole
 * backward pass ends: without this, every intermediate and every gradient of every layer stays in
 * memory until the step is over. The body runs in a tidy; dy, which only this op reads, is
 * disposed once the input gradients exist.
 */
export function releasingGrad<S extends tfc.Tensor[]>(
  tf: typeof tfc,
  body: (dy: tfc.Tensor, saved: S) => tfc.Tensor | tfc.Tensor[],
): (dy: tfc.Tensor, saved: S) => tfc.Tensor | tfc.Tensor[] {
  return (dy, saved) => {
    const grads = tf.tidy(() => body(dy, saved));
    if (!(Array.isArray(grads) ? grads : [grads]).includes(dy)) dy.dispose();
    return grads;
  };
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
 * tfjs saves every input of every op recorded on the gradient tape, frozen weights included, and
 * keeps them until the backward pass ends. Ops run inside a customGrad's forward are not
 * recorded, so the helpers below use the frozen base there and give the gradient for the
 * activation only.
 */

/** x [N, in] -> x W^T + b through a frozen linear, gradient for x only (dy W). */
export function frozenLinear(tf: typeof tfc, x: tfc.Tensor2D, lin: FrozenLinear): tfc.Tensor2D {
  const f = tf.customGrad(((input: tfc.Tensor2D) => ({
    value: lin.forward(input),
    gradFunc: releasingGrad(tf, (dy) => lin.backward(dy as tfc.Tensor2D)),
  })) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x) as tfc.Tensor2D;
}

/** Rows `ids` of a frozen table [R, C] -> [N, C]; nothing to differentiate. */
export function frozenGather(tf: typeof tfc, table: FrozenTable, ids: Int32Array): tfc.Tensor2D {
  const idx = tf.tensor1d(ids, 'int32');
  const f = tf.customGrad(((i: tfc.Tensor) => ({
    value: table.gather(ids),
    gradFunc: () => tf.zerosLike(i),
  })) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(idx) as tfc.Tensor2D;
}

/**
 * Sum over rows of -log softmax(x T^T)[target], differentiable in x, without the [rows x vocab]
 * logits: the table computes the loss and its gradient chunk by chunk in the forward (a sum's
 * gradient is known as soon as the logits are), and the backward scales that gradient by dy.
 */
export function frozenCrossEntropySum(tf: typeof tfc, x: tfc.Tensor2D, head: FrozenTable, targets: Int32Array, chunkRows: number): tfc.Scalar {
  const f = tf.customGrad(((input: tfc.Tensor2D, save: tfc.GradSaveFunc) => {
    const { loss, dx } = head.crossEntropy(input, targets, { grad: true, chunkRows });
    save([dx!]);
    return {
      value: tf.sum(loss),
      gradFunc: releasingGrad(tf, (dy, [g]) => tf.mul(g, dy)),
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x) as tfc.Scalar;
}
