import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';
import {
  combineOrders,
  scoreReview,
  summarizeScores,
  type EvalSummary,
  type JudgeOrder,
  type OrderedScore,
  type ReviewFailure,
  type SampleMetricScore,
} from './aggregate.js';
import type { MetricSet } from './metrics.js';

/**
 * MMRole-Eval's review file: a JSON array of the evaluated samples, each with the judge's reviews
 * added as `rm_review: { <metric>: { review: <raw judge text>, score: [a, b] } }`. rpv writes the
 * same layout (plus `rm_review_swapped` for swapped-order reviews), so any such file can be
 * re-aggregated with `rpv eval --from-reviews`. The stored `score` is never read: scores come from
 * parsing `review`, so a file's numbers are checked, not trusted.
 */
export interface ReviewEntry {
  review: string;
  /** The parsed pair, as MMRole stores it (informative; ignored on reading). */
  score: [number, number] | Record<string, never>;
}

export interface ReviewFileItem {
  id: string;
  rm_review?: Record<string, ReviewEntry>;
  rm_review_swapped?: Record<string, ReviewEntry>;
  [key: string]: unknown;
}

/** Read and validate a review file (a JSON array of objects). */
export async function readReviewFile(file: string): Promise<ReviewFileItem[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`eval: cannot read review file ${file}: ${errorMessage(err)}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new RpvError(`eval: ${file}: not valid JSON: ${errorMessage(err)}`);
  }
  if (!Array.isArray(data)) throw new RpvError(`eval: ${file}: expected a JSON array of reviewed samples, found ${typeof data}`);
  return data.map((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      throw new RpvError(`eval: ${file}: item ${i + 1}: expected an object, found ${JSON.stringify(item)?.slice(0, 40)}`);
    }
    const obj = item as Record<string, unknown>;
    const id = typeof obj.id === 'string' || typeof obj.id === 'number' ? String(obj.id) : `#${i + 1}`;
    return { ...obj, id } as ReviewFileItem;
  });
}

/** Metric names found in a file's reviews, in first-seen order. */
export function reviewMetricNames(items: readonly ReviewFileItem[]): string[] {
  const names: string[] = [];
  for (const item of items) {
    for (const key of Object.keys(item.rm_review ?? {})) if (!names.includes(key)) names.push(key);
  }
  return names;
}

/**
 * Every sample's score per metric from the review texts (parsed, never the stored `score`), with
 * each unparseable or missing review and each sample without reviews listed with its reason.
 */
export function reviewScores(
  items: readonly ReviewFileItem[],
  metricNames: readonly string[],
): { scores: SampleMetricScore[]; failures: ReviewFailure[]; unreviewed: { id: string; reason: string }[] } {
  const scores: SampleMetricScore[] = [];
  const failures: ReviewFailure[] = [];
  const unreviewed: { id: string; reason: string }[] = [];
  for (const item of items) {
    const forward = item.rm_review;
    const swapped = item.rm_review_swapped;
    const hasForward = forward && typeof forward === 'object' && Object.keys(forward).length > 0;
    const hasSwapped = swapped && typeof swapped === 'object' && Object.keys(swapped).length > 0;
    if (!hasForward && !hasSwapped) {
      unreviewed.push({ id: item.id, reason: 'no rm_review (no evaluated answer)' });
      continue;
    }
    for (const metric of metricNames) {
      const f = hasForward ? readOne(item.id, metric, 'forward', forward!, failures) : undefined;
      const s = hasSwapped ? readOne(item.id, metric, 'swapped', swapped!, failures) : undefined;
      const combined = combineOrders(item.id, metric, f, s);
      // A sample counts on a metric only when every order it was judged in parsed.
      if (combined && (!hasForward || f) && (!hasSwapped || s)) scores.push(combined);
    }
  }
  return { scores, failures, unreviewed };
}

/**
 * Score every review of `items` and aggregate: per-metric means over reviewed samples, counts,
 * and every unparseable or missing review listed with its reason. `metrics`: the metric set to
 * report (default: the metrics found in the file).
 */
export function summarizeReviews(items: readonly ReviewFileItem[], options: { metrics?: MetricSet; source?: string } = {}): EvalSummary {
  const metricNames = options.metrics ? options.metrics.metrics.map((m) => m.name) : reviewMetricNames(items);
  const { scores, failures, unreviewed } = reviewScores(items, metricNames);
  return summarizeScores({
    metricSet: options.metrics?.name ?? (options.source ? path.basename(options.source) : 'reviews'),
    metrics: metricNames,
    sampleIds: items.map((i) => i.id),
    scores,
    failures,
    unreviewed,
  });
}

function readOne(
  id: string,
  metric: string,
  order: JudgeOrder,
  reviews: Record<string, ReviewEntry>,
  failures: ReviewFailure[],
): OrderedScore | undefined {
  const entry = reviews[metric];
  const text = entry && typeof entry === 'object' ? entry.review : undefined;
  if (typeof text !== 'string') {
    failures.push({ id, metric, order, reason: `no review for metric '${metric}'` });
    return undefined;
  }
  const result = scoreReview(text, order);
  if (!result.ok) {
    failures.push({ id, metric, order, reason: result.reason, review: text });
    return undefined;
  }
  return result.score;
}
