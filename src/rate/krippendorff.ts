import { Rng } from '../util/random.js';

/**
 * Krippendorff's alpha, the reliability of ratings given by several raters to a set of units, with
 * any number of raters per unit (missing ratings allowed), following Krippendorff, "Computing
 * Krippendorff's Alpha-Reliability" (2011, https://repository.upenn.edu/asc_papers/43):
 *
 * - Each unit's values are paired: a unit with m_u >= 2 values adds, for every ordered pair of
 *   its values (c, k) given by different raters, 1 / (m_u - 1) to the coincidence o_ck. Units with
 *   fewer than two values are not pairable and are left out.
 * - n_c = sum_k o_ck, n = sum_c n_c (the pairable values);
 *   alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck.
 * - d_ck, the squared difference of the level: nominal 0 if c = k else 1; ordinal
 *   (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 over the values between c and k in order; interval
 *   (c - k)^2; ratio ((c - k) / (c + k))^2.
 *
 * Alpha is 1 for perfect agreement and 0 when agreement is what chance would give. It is undefined
 * (null here, with the reason) when no unit has two values, or when all pairable values are the
 * same (no variation: the expected disagreement is 0).
 */

export type AlphaLevel = 'nominal' | 'ordinal' | 'interval' | 'ratio';
export const ALPHA_LEVELS: readonly AlphaLevel[] = ['nominal', 'ordinal', 'interval', 'ratio'];

/** A rating: a number (any level) or a category name (nominal only). */
export type RatingValue = number | string;

export interface AlphaResult {
  level: AlphaLevel;
  /** Null when undefined; `reason` says why. */
  alpha: number | null;
  reason?: string;
  /** Units with at least two values (the pairable units). */
  units: number;
  /** Pairable values: the n of the formula. */
  values: number;
  /** Observed and expected disagreement (D_o, D_e; alpha = 1 - D_o / D_e). */
  observed: number | null;
  expected: number | null;
}

/** Values mapped to indices of their sorted distinct values; per unit, the sparse coincidences. */
interface Coincidences {
  /** Sorted distinct values. */
  domain: RatingValue[];
  /** Per pairable unit: flat [c, k, weight, c, k, weight, ...]. */
  perUnit: Float64Array[];
}

function compareValues(a: RatingValue, b: RatingValue): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
}

function coincidences(units: readonly (readonly RatingValue[])[], level: AlphaLevel): Coincidences {
  const all = new Set<RatingValue>();
  for (const u of units) {
    if (u.length < 2) continue;
    for (const v of u) {
      if (level !== 'nominal' && (typeof v !== 'number' || !Number.isFinite(v))) {
        throw new Error(`${level} alpha needs numbers; found ${JSON.stringify(v)} (category names need --level nominal)`);
      }
      if (level === 'ratio' && (v as number) < 0) throw new Error(`ratio alpha needs values >= 0; found ${v}`);
      all.add(v);
    }
  }
  const domain = [...all].sort(compareValues);
  const index = new Map(domain.map((v, i) => [v, i]));
  const perUnit: Float64Array[] = [];
  for (const u of units) {
    if (u.length < 2) continue;
    const counts = new Map<number, number>();
    for (const v of u) {
      const i = index.get(v)!;
      counts.set(i, (counts.get(i) ?? 0) + 1);
    }
    const entries = [...counts.entries()];
    const flat: number[] = [];
    const m = u.length;
    for (const [c, nc] of entries) {
      for (const [k, nk] of entries) {
        const pairs = c === k ? nc * (nc - 1) : nc * nk;
        if (pairs > 0) flat.push(c, k, pairs / (m - 1));
      }
    }
    perUnit.push(Float64Array.from(flat));
  }
  return { domain, perUnit };
}

/** The squared-difference function d(c, k) on value indices, given the marginals n_c. */
function deltaTable(domain: readonly RatingValue[], marginals: Float64Array, level: AlphaLevel): Float64Array {
  const v = domain.length;
  const d = new Float64Array(v * v);
  for (let c = 0; c < v; c++) {
    for (let k = 0; k < v; k++) {
      let x = 0;
      if (c === k) x = 0;
      else if (level === 'nominal') x = 1;
      else if (level === 'interval') x = ((domain[c] as number) - (domain[k] as number)) ** 2;
      else if (level === 'ratio') {
        const a = domain[c] as number;
        const b = domain[k] as number;
        x = a + b === 0 ? 0 : ((a - b) / (a + b)) ** 2;
      } else {
        const lo = Math.min(c, k);
        const hi = Math.max(c, k);
        let s = 0;
        for (let g = lo; g <= hi; g++) s += marginals[g]!;
        x = (s - (marginals[lo]! + marginals[hi]!) / 2) ** 2;
      }
      d[c * v + k] = x;
    }
  }
  return d;
}

/** Alpha from a coincidence matrix (v x v, row-major). */
function alphaFromMatrix(o: Float64Array, domain: readonly RatingValue[], level: AlphaLevel, units: number): AlphaResult {
  const v = domain.length;
  const marginals = new Float64Array(v);
  let n = 0;
  for (let c = 0; c < v; c++) {
    for (let k = 0; k < v; k++) marginals[c] += o[c * v + k]!;
    n += marginals[c]!;
  }
  const values = Math.round(n);
  if (units === 0 || n < 2) {
    return { level, alpha: null, reason: 'no unit has ratings from two raters', units, values, observed: null, expected: null };
  }
  const d = deltaTable(domain, marginals, level);
  let observedSum = 0;
  let expectedSum = 0;
  for (let c = 0; c < v; c++) {
    for (let k = 0; k < v; k++) {
      observedSum += o[c * v + k]! * d[c * v + k]!;
      expectedSum += marginals[c]! * marginals[k]! * d[c * v + k]!;
    }
  }
  const observed = observedSum / n;
  const expected = expectedSum / (n * (n - 1));
  if (expected === 0) {
    const only = domain.filter((_, i) => marginals[i]! > 0);
    return { level, alpha: null, reason: `no variation: every pairable rating is ${only.map((x) => JSON.stringify(x)).join(', ')}`, units, values, observed, expected };
  }
  return { level, alpha: 1 - observed / expected, units, values, observed, expected };
}

function sumUnits(c: Coincidences, pick: ArrayLike<number>): Float64Array {
  const v = c.domain.length;
  const o = new Float64Array(v * v);
  for (let i = 0; i < pick.length; i++) {
    const flat = c.perUnit[pick[i]!]!;
    for (let j = 0; j < flat.length; j += 3) o[flat[j]! * v + flat[j + 1]!] += flat[j + 2]!;
  }
  return o;
}

/**
 * Krippendorff's alpha of `units`: each unit is the list of values its raters gave (missing
 * ratings simply absent). Throws on a non-number at the ordinal, interval or ratio level.
 */
export function krippendorffAlpha(units: readonly (readonly RatingValue[])[], level: AlphaLevel): AlphaResult {
  const c = coincidences(units, level);
  const all = Array.from({ length: c.perUnit.length }, (_, i) => i);
  return alphaFromMatrix(sumUnits(c, all), c.domain, level, c.perUnit.length);
}

export interface AlphaBootstrapOptions {
  /** Resamples. Default 1000. */
  resamples?: number;
  /** Confidence level of the interval. Default 0.95. */
  confidence?: number;
  /** Seed of the resampling: the same seed gives the same interval. Default 0. */
  seed?: number | string;
}

export interface AlphaInterval {
  low: number;
  high: number;
  confidence: number;
  /** Resamples drawn, and how many had a defined alpha (the interval is over those). */
  resamples: number;
  defined: number;
}

/**
 * Percentile bootstrap interval of alpha: the pairable units are resampled with replacement (the
 * unit is what the raters agree on; its values stay together), alpha recomputed each time (the
 * ordinal differences from each resample's own marginals). Null when alpha itself is undefined.
 */
export function alphaBootstrap(units: readonly (readonly RatingValue[])[], level: AlphaLevel, options: AlphaBootstrapOptions = {}): AlphaInterval | null {
  const { resamples = 1000, confidence = 0.95, seed = 0 } = options;
  const c = coincidences(units, level);
  const m = c.perUnit.length;
  if (m === 0) return null;
  const rng = Rng.fromKey('krippendorff-bootstrap', seed, level);
  const pick = new Uint32Array(m);
  const alphas: number[] = [];
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < m; i++) pick[i] = rng.below(m);
    const result = alphaFromMatrix(sumUnits(c, pick), c.domain, level, m);
    if (result.alpha !== null) alphas.push(result.alpha);
  }
  if (alphas.length === 0) return null;
  alphas.sort((a, b) => a - b);
  const tail = (1 - confidence) / 2;
  return { low: quantile(alphas, tail), high: quantile(alphas, 1 - tail), confidence, resamples, defined: alphas.length };
}

/** Linear-interpolated quantile of sorted values (numpy's default). */
export function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}
