import { describe, expect, it } from 'vitest';
import { averageRanks, correlate, kendallTauB, spearman } from '../../src/rate/index.js';

describe('rank correlations', () => {
  it("match scipy's documented examples", () => {
    // scipy.stats.kendalltau docs: x1 = [12, 2, 1, 12, 2], x2 = [1, 4, 7, 1, 0] -> tau = -0.47140452079103173
    expect(kendallTauB([12, 2, 1, 12, 2], [1, 4, 7, 1, 0])).toBeCloseTo(-0.47140452079103173, 14);
    // scipy.stats.spearmanr docs: spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) -> 0.8207826816681233
    expect(spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])).toBeCloseTo(0.8207826816681233, 14);
  });

  it('give average ranks to ties', () => {
    expect(averageRanks([10, 20, 10, 30, 20, 20])).toEqual([1.5, 4, 1.5, 6, 4, 4]);
  });

  it('are 1 / -1 for monotone data and undefined for constant data or one pair', () => {
    expect(correlate([1, 2, 3, 4], [2, 4, 8, 16])).toEqual({ n: 4, spearman: 1, kendallTauB: 1 });
    expect(correlate([1, 2, 3, 4], [9, 7, 5, 1])).toEqual({ n: 4, spearman: -1, kendallTauB: -1 });
    expect(correlate([1, 2, 3], [5, 5, 5])).toEqual({ n: 3, spearman: null, kendallTauB: null });
    expect(correlate([1], [2])).toEqual({ n: 1, spearman: null, kendallTauB: null });
  });

  it('tau-b by hand with ties on both sides', () => {
    // x = [1,1,2,3], y = [1,2,3,3]: C = 4 ((1,3),(1,4),(2,3),(2,4)), D = 0, ties x = 1, ties y = 1:
    // tau-b = 4 / sqrt((6 - 1) * (6 - 1)) = 0.8
    expect(kendallTauB([1, 1, 2, 3], [1, 2, 3, 3])).toBeCloseTo(0.8, 14);
  });
});
