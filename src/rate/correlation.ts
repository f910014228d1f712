/**
 * Rank correlations between two paired lists of scores (a judge's and the humans' mean per item):
 * Spearman's rho (Pearson's correlation of the ranks, ties given their average rank) and Kendall's
 * tau-b (concordant minus discordant pairs over the pairs not tied, corrected for ties on either
 * side), the statistics scipy's `spearmanr` and `kendalltau` compute. Both are null when fewer than
 * two pairs remain or one side does not vary.
 */

export interface Correlation {
  /** Pairs used. */
  n: number;
  spearman: number | null;
  kendallTauB: number | null;
}

/** Ranks 1..n, ties sharing their average rank. */
export function averageRanks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    const rank = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) ranks[order[t]![1]] = rank;
    i = j + 1;
  }
  return ranks;
}

/** Pearson's correlation; null when n < 2 or either side is constant. */
export function pearson(x: readonly number[], y: readonly number[]): number | null {
  checkPaired(x, y);
  const n = x.length;
  if (n < 2) return null;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return null;
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

/** Spearman's rho: Pearson's correlation of the average ranks. */
export function spearman(x: readonly number[], y: readonly number[]): number | null {
  checkPaired(x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

/** Kendall's tau-b (ties on either side corrected); O(n^2), fine for thousands of items. */
export function kendallTauB(x: readonly number[], y: readonly number[]): number | null {
  checkPaired(x, y);
  const n = x.length;
  if (n < 2) return null;
  let concordant = 0;
  let discordant = 0;
  let tiedX = 0; // pairs tied in x only or in both
  let tiedY = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const dx = Math.sign(x[i]! - x[j]!);
      const dy = Math.sign(y[i]! - y[j]!);
      if (dx === 0) tiedX++;
      if (dy === 0) tiedY++;
      if (dx !== 0 && dy !== 0) {
        if (dx === dy) concordant++;
        else discordant++;
      }
    }
  }
  const pairs = (n * (n - 1)) / 2;
  const denominator = Math.sqrt((pairs - tiedX) * (pairs - tiedY));
  if (denominator === 0) return null;
  return (concordant - discordant) / denominator;
}

/** Both correlations of paired scores. */
export function correlate(x: readonly number[], y: readonly number[]): Correlation {
  return { n: x.length, spearman: spearman(x, y), kendallTauB: kendallTauB(x, y) };
}

function checkPaired(x: readonly number[], y: readonly number[]): void {
  if (x.length !== y.length) throw new Error(`correlation: ${x.length} x values but ${y.length} y values`);
}
