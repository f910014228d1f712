import { RpvError } from '../util/errors.js';
import type { RatingRow } from './csv.js';
import { alphaBootstrap, krippendorffAlpha, type AlphaLevel, type RatingValue } from './krippendorff.js';

/**
 * Inter-rater agreement of a ratings CSV, per metric: Krippendorff's alpha with a bootstrap
 * interval. A unit is what several raters judged: one answer of one item (scores), or one item's
 * pair of answers (pairwise; always at the nominal level, its values being system names or `tie`).
 * A metric holding both kinds reports them apart, as `<metric> (scores)` and `<metric> (pairwise)`.
 */

export interface AgreementOptions {
  /** Level of the scores (pairwise ratings are nominal). Default `interval`. */
  level?: AlphaLevel;
  /** Bootstrap resamples; 0 for no interval. Default 1000. */
  resamples?: number;
  /** Default 0.95. */
  confidence?: number;
  /** Seed of the bootstrap. Default 0. */
  seed?: number;
  /** The file the rows came from, for messages. */
  source?: string;
}

export interface MetricAgreement {
  metric: string;
  kind: 'score' | 'pairwise';
  level: AlphaLevel;
  alpha: number | null;
  /** Why alpha is undefined, when it is. */
  reason?: string;
  /** Bootstrap interval; null when alpha is undefined or resamples is 0. */
  low: number | null;
  high: number | null;
  confidence: number;
  raters: number;
  items: number;
  /** Units rated (answers, or pairs), and those rated by two raters or more (the ones alpha uses). */
  units: number;
  pairableUnits: number;
  ratings: number;
  /** Pairable ratings: the n of the formula. */
  values: number;
}

/** Alpha per metric (and kind), keyed by metric name. Duplicate ratings (same rater, item, system, metric) are an error. */
export function ratingsAgreement(rows: readonly RatingRow[], options: AgreementOptions = {}): Record<string, MetricAgreement> {
  const { level = 'interval', resamples = 1000, confidence = 0.95, seed = 0, source = 'ratings' } = options;
  const groups = new Map<string, { metric: string; kind: RatingRow['kind']; rows: RatingRow[] }>();
  const seen = new Map<string, RatingRow>();
  for (const r of rows) {
    const key = `${r.rater}\u0000${r.item}\u0000${r.system}\u0000${r.metric}`;
    const first = seen.get(key);
    if (first) {
      throw new RpvError(
        `rate: ${source} line ${r.line ?? '?'}: rater ${r.rater} rated item ${r.item}${r.system ? ` (${r.system})` : ''} on ${r.metric} twice (also line ${first.line ?? '?'}); export current ratings only (without --history)`,
      );
    }
    seen.set(key, r);
    const g = `${r.metric}\u0000${r.kind}`;
    if (!groups.has(g)) groups.set(g, { metric: r.metric, kind: r.kind, rows: [] });
    groups.get(g)!.rows.push(r);
  }
  const kindsOf = new Map<string, number>();
  for (const g of groups.values()) kindsOf.set(g.metric, (kindsOf.get(g.metric) ?? 0) + 1);

  const out: Record<string, MetricAgreement> = {};
  for (const g of groups.values()) {
    const unitLevel: AlphaLevel = g.kind === 'pairwise' ? 'nominal' : level;
    const units = new Map<string, RatingValue[]>();
    for (const r of g.rows) {
      const key = `${r.item}\u0000${r.system}`;
      if (!units.has(key)) units.set(key, []);
      units.get(key)!.push(r.score);
    }
    const values = [...units.values()];
    const result = krippendorffAlpha(values, unitLevel);
    const interval = result.alpha !== null && resamples > 0 ? alphaBootstrap(values, unitLevel, { resamples, confidence, seed }) : null;
    const name = kindsOf.get(g.metric)! > 1 ? `${g.metric} (${g.kind === 'score' ? 'scores' : 'pairwise'})` : g.metric;
    out[name] = {
      metric: g.metric,
      kind: g.kind,
      level: unitLevel,
      alpha: result.alpha,
      ...(result.reason ? { reason: result.reason } : {}),
      low: interval?.low ?? null,
      high: interval?.high ?? null,
      confidence,
      raters: new Set(g.rows.map((r) => r.rater)).size,
      items: new Set(g.rows.map((r) => r.item)).size,
      units: units.size,
      pairableUnits: result.units,
      ratings: g.rows.length,
      values: result.values,
    };
  }
  return out;
}

/** The agreement as an aligned table. */
export function formatAgreementTable(result: Record<string, MetricAgreement>): string {
  const names = Object.keys(result);
  const width = Math.max(6, ...names.map((n) => n.length));
  const f = (x: number | null) => (x === null ? '-' : x.toFixed(3));
  const lines = [`${'metric'.padEnd(width)}  level     alpha   ${'interval'.padEnd(15)}  raters  items  units (2+ raters)  ratings`];
  for (const name of names) {
    const m = result[name]!;
    const interval = m.low === null ? '-' : `[${f(m.low)}, ${f(m.high)}]`;
    lines.push(
      `${name.padEnd(width)}  ${m.level.padEnd(8)}  ${f(m.alpha).padStart(6)}  ${interval.padEnd(15)}  ${String(m.raters).padStart(6)}  ${String(m.items).padStart(5)}  ${`${m.units} (${m.pairableUnits})`.padStart(17)}  ${String(m.ratings).padStart(7)}` +
        (m.reason ? `  (${m.reason})` : ''),
    );
  }
  return lines.join('\n');
}
