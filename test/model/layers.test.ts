import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/index.js';
import { rmsNorm } from '../../src/model/rmsnorm.js';
import { applyRope, ropeTables, rotateHalfMatrix, tileRopeTables } from '../../src/model/rope.js';
import { ropeInvFreq } from '../../src/model/config.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

describe('RMSNorm and rotary embedding against hand-computed values', () => {
  it('RMSNorm: w * x / sqrt(mean(x^2) + eps)', async () => {
    const y = rmsNorm(tf, tf.tensor2d([[1, 2, 3, 4]]), tf.tensor1d([1, 1, 2, 0.5]), 1e-6);
    // mean(x^2) = 7.5, 1/sqrt(7.5) = 0.36514837
    const expected = [0.36514835, 0.7302967, 2.1908901, 0.7302967];
    const got = await y.data();
    expected.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
  });

  it('rotary in rotate-half layout: [x1 cos - x2 sin, x2 cos + x1 sin]', async () => {
    const config = { headDim: 4, ropeTheta: 10000, ropeScaling: { type: 'default' as const } };
    // inv_freq = [1, 0.01]; position 2 -> angles [2, 0.02] on both halves.
    const { cos, sin } = ropeTables(config, [2]);
    expect(Array.from(cos)).toEqual([Math.fround(Math.cos(2)), Math.fround(Math.cos(0.02)), Math.fround(Math.cos(2)), Math.fround(Math.cos(0.02))]);
    // Two heads side by side, the second scaled by 2; tables tiled over heads, scale 0.5 folded in.
    const tables = tileRopeTables(cos, sin, 4, 2, 0.5);
    const x = tf.tensor2d([1, 2, 3, 4, 2, 4, 6, 8], [1, 8]);
    const y = applyRope(tf, x, 2, tf.tensor2d(tables.cos, [1, 8]), tf.tensor2d(tables.sin, [1, 8]), tf.tensor2d(rotateHalfMatrix(4), [4, 4]));
    const expected = [-3.1440391, 1.9196053, -0.3391431, 4.0391974];
    const got = await y.data();
    expected.forEach((v, i) => {
      expect(got[i]).toBeCloseTo(v * 0.5, 5);
      expect(got[4 + i]).toBeCloseTo(v, 5);
    });
  });

  it('position 0 leaves vectors unchanged; llama3 scaling keeps high, divides low and blends medium frequencies', () => {
    const { cos, sin } = ropeTables({ headDim: 4, ropeTheta: 10000, ropeScaling: { type: 'default' } }, [0]);
    expect(Array.from(cos)).toEqual([1, 1, 1, 1]);
    expect(Array.from(sin)).toEqual([0, 0, 0, 0]);
    const inv = ropeInvFreq({
      headDim: 8,
      ropeTheta: 10000,
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 1024 },
    });
    // wavelengths 6.3, 62.8 (< 1024/4: kept), 628.3 (between: smoothed), 6283 (> 1024: / 8)
    const expected = [1, 0.1, 0.003086760967, 0.000125];
    expected.forEach((v, i) => expect(inv[i]).toBeCloseTo(v, 10));
  });
});
