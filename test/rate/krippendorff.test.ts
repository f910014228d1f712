import { describe, expect, it } from 'vitest';
import { alphaBootstrap, krippendorffAlpha, type AlphaLevel, type RatingValue } from '../../src/rate/index.js';

// The worked example of Krippendorff, K. (2011). "Computing Krippendorff's Alpha-Reliability".
// Departmental Papers (ASC), University of Pennsylvania, https://repository.upenn.edu/asc_papers/43
// Reliability data of 4 observers (A-D) x 12 units, values 1-5, with missing values (null); unit 12
// has a single value and is not pairable, so n = 40 pairable values. The paper's results:
// nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797.
const N = null;
const observers: (number | null)[][] = [
  /* A */ [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
  /* B */ [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
  /* C */ [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
  /* D */ [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
];
const units: number[][] = Array.from({ length: 12 }, (_, u) => observers.map((row) => row[u]).filter((v): v is number => v !== null));

describe("Krippendorff's alpha", () => {
  it.each([
    ['nominal', 0.743],
    ['ordinal', 0.815],
    ['interval', 0.849],
    ['ratio', 0.797],
  ] as [AlphaLevel, number][])('reproduces Krippendorff (2011) at the %s level: %s', (level, published) => {
    const r = krippendorffAlpha(units, level);
    expect(r.alpha!.toFixed(3)).toBe(published.toFixed(3));
    expect([r.units, r.values]).toEqual([11, 40]);
  });

  it('is 1 for perfect agreement at every level, missing ratings and all', () => {
    const perfect = [[1, 1, 1], [2, 2], [5, 5, 5], [3]];
    for (const level of ['nominal', 'ordinal', 'interval', 'ratio'] as const) expect(krippendorffAlpha(perfect, level).alpha).toBe(1);
  });

  it('is undefined without variation, and says so', () => {
    expect(krippendorffAlpha([[5, 5], [5, 5, 5]], 'interval')).toEqual({
      level: 'interval',
      alpha: null,
      reason: 'no variation: every pairable rating is 5',
      units: 2,
      values: 5,
      observed: 0,
      expected: 0,
    });
  });

  it('is undefined with one rater per unit', () => {
    const r = krippendorffAlpha([[3], [4], [5]], 'ordinal');
    expect([r.alpha, r.reason, r.units, r.values]).toEqual([null, 'no unit has ratings from two raters', 0, 0]);
  });

  it('matches hand computations (nominal with category names, interval)', () => {
    // o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8: alpha = 1 - 7 * 2 / 30 = 16/30.
    const nominal = krippendorffAlpha([['a', 'a'], ['a', 'b'], ['b', 'b'], ['b', 'b']] as RatingValue[][], 'nominal');
    expect(nominal.alpha).toBeCloseTo(16 / 30, 12);
    // o_12 = o_21 = 1, o_33 = 2; n = 4; sum o d = 2, sum n_c n_k d = 2 * (1 + 2*4 + 2*1) = 22: alpha = 1 - 3 * 2 / 22.
    expect(krippendorffAlpha([[1, 2], [3, 3]], 'interval').alpha).toBeCloseTo(16 / 22, 12);
    // Systematic disagreement goes below 0.
    expect(krippendorffAlpha([[1, 2], [2, 1], [1, 2], [2, 1]], 'nominal').alpha).toBeLessThan(0);
  });

  it('refuses category names above the nominal level', () => {
    expect(() => krippendorffAlpha([['a', 'b']], 'interval')).toThrow('interval alpha needs numbers; found "a" (category names need --level nominal)');
  });

  it('has a seeded bootstrap interval around the estimate', () => {
    const a = alphaBootstrap(units, 'interval', { seed: 7, resamples: 500 })!;
    const b = alphaBootstrap(units, 'interval', { seed: 7, resamples: 500 })!;
    const c = alphaBootstrap(units, 'interval', { seed: 8, resamples: 500 })!;
    expect(a).toEqual(b);
    expect(c.low).not.toBe(a.low);
    expect(a.low).toBeLessThan(0.849);
    expect(a.high).toBeGreaterThan(0.849);
    expect(a.high).toBeLessThanOrEqual(1);
    expect([a.confidence, a.resamples]).toEqual([0.95, 500]);
    expect(a.defined).toBeGreaterThan(480);
    expect(alphaBootstrap([[3], [4]], 'interval')).toBeNull();
  });
});
