import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { AdamW, clipGradNorm, decays } from '../../src/train/adamw.js';
import { lrAt, warmupStepsFor } from '../../src/train/schedule.js';
import { Rng } from '../../src/util/random.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('learning-rate schedule', () => {
  const opts = { peakLr: 1, totalSteps: 10, warmupSteps: 2 };
  it('warms up linearly then decays along a cosine (hand-computed)', () => {
    expect([0, 1, 2, 6, 10].map((s) => lrAt(s, opts))).toEqual([0, 0.5, 1, expect.closeTo(0.5, 12), expect.closeTo(0, 12)]);
    expect(lrAt(4, opts)).toBeCloseTo(0.5 * (1 + Math.cos(Math.PI * 0.25)), 12);
    expect(lrAt(6, { ...opts, minLrRatio: 0.1 })).toBeCloseTo(0.55, 12);
    expect(lrAt(6, { ...opts, type: 'linear' })).toBeCloseTo(0.5, 12);
    expect(lrAt(9, { ...opts, type: 'constant' })).toBe(1);
  });
  it('derives warm-up steps from a ratio', () => {
    expect(warmupStepsFor(100, 0.03, null)).toBe(3);
    expect(warmupStepsFor(10, 0.03, null)).toBe(1);
    expect(warmupStepsFor(10, 0.03, 4)).toBe(4);
  });
});

describe('AdamW', () => {
  it('matches hand-computed updates, with decoupled decay on matrices only', () => {
    const w = tf.variable(tf.tensor2d([[1, -2]]));
    const b = tf.variable(tf.tensor1d([1]));
    const opt = new AdamW(
      [
        { name: 'proj.weight', variable: w, group: 'p' },
        { name: 'proj.bias', variable: b, group: 'p' },
      ],
      { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
    );
    expect(opt.decayedNames()).toEqual(['proj.weight']);
    const grads = () => new Map<string, tf.Tensor>([['proj.weight', tf.tensor2d([[0.5, -1]])], ['proj.bias', tf.tensor1d([0.5])]]);
    opt.step(grads(), () => 0.1);
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.899, 6), expect.closeTo(-1.898, 6)]);
    expect(b.dataSync()[0]).toBeCloseTo(0.9, 6);
    opt.step(grads(), () => 0.1);
    // m = [0.095, -0.19], v = [0.00049975, 0.001999]: both bias-corrected back to g and g^2.
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.899 * 0.999 - 0.1, 6), expect.closeTo(-1.898 * 0.999 + 0.1, 6)]);
    expect(b.dataSync()[0]).toBeCloseTo(0.8, 6);
    opt.dispose();
  });

  it('skips parameters without a gradient, step count included; state round-trips exactly', async () => {
    const a = tf.variable(tf.tensor2d([[1, 2]]));
    const c = tf.variable(tf.tensor2d([[3, 4]]));
    const params = [
      { name: 'a', variable: a, group: 'x' },
      { name: 'c', variable: c, group: 'y' },
    ];
    const opt = new AdamW(params, { weightDecay: 0 });
    opt.step(new Map([['a', tf.tensor2d([[1, 1]])]]), () => 0.1);
    expect(Array.from(c.dataSync())).toEqual([3, 4]);
    const state = await opt.state();
    expect(state.params.map((p) => p.step)).toEqual([1, 0]);
    const opt2 = new AdamW(params, { weightDecay: 0 });
    opt2.loadState(state);
    expect(await opt2.state()).toEqual(state);
    expect(decays('layers.0.input_layernorm.weight', [4, 4])).toBe(false);
    opt.dispose();
    opt2.dispose();
  });

  it('clips by global norm like torch', async () => {
    const g = new Map<string, tf.Tensor>([['a', tf.tensor1d([3])], ['b', tf.tensor1d([4])]]);
    const norm = await clipGradNorm(g, 1);
    expect(norm).toBeCloseTo(5, 6);
    expect(g.get('a')!.dataSync()[0]).toBeCloseTo(3 / (5 + 1e-6), 6);
    expect(g.get('b')!.dataSync()[0]).toBeCloseTo(4 / (5 + 1e-6), 6);
  });
});

describe('Rng', () => {
  it('continues identically from a saved state', () => {
    const r = new Rng(42);
    r.nextUint32();
    const saved = r.state();
    const a = [r.nextUint32(), r.nextFloat(), r.nextSeed()];
    const r2 = new Rng(saved);
    expect([r2.nextUint32(), r2.nextFloat(), r2.nextSeed()]).toEqual(a);
    expect(new Rng(1).nextUint32()).not.toBe(new Rng(2).nextUint32());
  });
});
