// RpvTakeRows (src/native/take-rows.ts): rows copied inside the wasm heap equal tf.gather's, rows
// repeated and in any order, and gatherRows keeps its gradient (ScatterNd) through it.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend.js';
import { gatherRows } from '../../src/model/ops.js';
import { takeRows, takeRowsAvailable } from '../../src/native/take-rows.js';
import { randomArray } from './helpers.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

it('takes the rows tf.gather takes, repeated and out of order', async () => {
  expect(takeRowsAvailable()).toBe(true);
  const x = tf.tensor2d(randomArray(37 * 13, 4), [37, 13]);
  const rows = Int32Array.of(36, 0, 5, 5, 17, 0, 36);
  const got = takeRows(x, rows);
  const want = tf.gather(x, tf.tensor1d(rows, 'int32'));
  expect(got.shape).toEqual([7, 13]);
  expect(Array.from(await got.data())).toEqual(Array.from(await want.data()));
  expect(() => takeRows(x, Int32Array.of(3, 37))).toThrow('RpvTakeRows: row 37 (index 1) is outside [0, 37)');
  tf.dispose([x, got, want]);
});

it('keeps gatherRows differentiable: repeated rows sum their gradients', async () => {
  const x = tf.tensor2d(randomArray(6 * 4, 9), [6, 4]);
  const rows = Int32Array.of(2, 5, 2);
  const w = tf.tensor2d(randomArray(3 * 4, 10), [3, 4]);
  const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(gatherRows(tf, a as tf.Tensor2D, rows), w)))(x);
  const grad = (await g.data()) as Float32Array;
  const wv = (await w.data()) as Float32Array;
  for (let r = 0; r < 6; r++) {
    for (let c = 0; c < 4; c++) {
      let want = 0;
      rows.forEach((row, i) => {
        if (row === r) want += wv[i * 4 + c];
      });
      expect(grad[r * 4 + c]).toBeCloseTo(want, 6);
    }
  }
  tf.dispose([x, w, g]);
});
