import { parseJudgeScores } from './parse.js';

/**
 * From judge reviews to the report's numbers, following MMRole-Eval's `RM_result.py`: a sample's
 * metric score is a / b (the evaluated answer's score over the ground truth's); a metric's mean is
 * the plain sum of the samples' scores, added in sample order starting from 0, divided by their
 * number; nothing is rounded. Samples without a review (MMRole: no evaluated answer) are counted
 * apart and left out of the means. With swapped-order judging the ground truth is shown first, so
 * the evaluated answer's score is the second of the pair; the sample's score is then the average
 * of its two ratios.
 */

/** Which answer the judge saw first: `forward` = evaluated answer as Model A (the protocol). */
export type JudgeOrder = 'forward' | 'swapped';

/** The judge's two scores of one review, already mapped to evaluated / ground truth. */
export interface OrderedScore {
  /** Score of the evaluated answer. */
  evaluated: number;
  /** Score of the ground-truth answer. */
  groundTruth: number;
  /** evaluated / groundTruth. */
  ratio: number;
}

/** One sample's score on one metric. */
export interface SampleMetricScore {
  id: string;
  metric: string;
  /** The sample's metric score: the forward ratio, or the mean of both orders' ratios. */
  score: number;
  forward?: OrderedScore;
  swapped?: OrderedScore;
}

/** A review that could not be turned into a score: reported, never dropped silently. */
export interface ReviewFailure {
  id: string;
  metric: string;
  order: JudgeOrder;
  reason: string;
  /** The judge's last text, when there was one. */
  review?: string;
}

/** Parse one review and map its pair to evaluated / ground truth by `order`. */
export function scoreReview(review: string, order: JudgeOrder = 'forward'): { ok: true; score: OrderedScore } | { ok: false; reason: string } {
  const parsed = parseJudgeScores(review);
  if (!parsed.ok) return parsed;
  const [evaluated, groundTruth] = order === 'forward' ? [parsed.a, parsed.b] : [parsed.b, parsed.a];
  if (groundTruth === 0) {
    return { ok: false, reason: `the ground truth scored 0, so the ratio is undefined: '${parsed.matched}'` };
  }
  return { ok: true, score: { evaluated, groundTruth, ratio: evaluated / groundTruth } };
}

/** Combine a sample's forward and (optional) swapped scores on one metric. */
export function combineOrders(id: string, metric: string, forward?: OrderedScore, swapped?: OrderedScore): SampleMetricScore | null {
  if (forward && swapped) return { id, metric, score: (forward.ratio + swapped.ratio) / 2, forward, swapped };
  if (forward) return { id, metric, score: forward.ratio, forward };
  if (swapped) return { id, metric, score: swapped.ratio, swapped };
  return null;
}

export interface MetricSummary {
  metric: string;
  /** Samples with a valid score on this metric: the denominator of `mean`. */
  count: number;
  /** Reviews of this metric that stayed unparseable (after retries, for live judging). */
  failed: number;
  /** Mean over samples of the sample's score (a / b); null when count is 0. */
  mean: number | null;
  /** Mean judge score of the evaluated answer and of the ground truth (1–10 scale). */
  meanEvaluated: number | null;
  meanGroundTruth: number | null;
  /** With swapped-order judging: the mean ratio of each order alone, to show position bias. */
  meanForward?: number | null;
  meanSwapped?: number | null;
}

export interface EvalSummary {
  metricSet: string;
  /** Samples in the input. */
  samples: number;
  /** Samples with at least one review: MMRole's `count` column. */
  reviewed: number;
  /** Samples that had nothing to judge (no evaluated answer, no review), with their ids. */
  unreviewed: { id: string; reason: string }[];
  metrics: MetricSummary[];
  /** Mean of the metrics' means (the papers' overall figure), over metrics with a mean. */
  overall: { mean: number | null; metrics: number };
  failures: ReviewFailure[];
}

/** Plain left-to-right mean, as Python's `total += x` loop then `/ count` (bit-identical). */
export function sequentialMean(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  let sum = 0.0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/**
 * Per-metric and overall means of `scores` (in sample order), with counts. `sampleIds` lists every
 * input sample in order; `unreviewed` the ones that had nothing to judge.
 */
export function summarizeScores(options: {
  metricSet: string;
  metrics: readonly string[];
  sampleIds: readonly string[];
  scores: readonly SampleMetricScore[];
  failures?: readonly ReviewFailure[];
  unreviewed?: readonly { id: string; reason: string }[];
}): EvalSummary {
  const { metricSet, metrics, sampleIds, scores, failures = [], unreviewed = [] } = options;
  const order = new Map(sampleIds.map((id, i) => [id, i]));
  const rank = (id: string) => order.get(id) ?? Number.MAX_SAFE_INTEGER;
  const sorted = [...scores].sort((x, y) => rank(x.id) - rank(y.id));
  const skipped = new Set(unreviewed.map((u) => u.id));
  const reviewedIds = new Set<string>();
  for (const s of sorted) reviewedIds.add(s.id);
  for (const f of failures) if (!skipped.has(f.id)) reviewedIds.add(f.id);

  const summaries: MetricSummary[] = metrics.map((metric) => {
    const mine = sorted.filter((s) => s.metric === metric);
    const summary: MetricSummary = {
      metric,
      count: mine.length,
      failed: new Set(failures.filter((f) => f.metric === metric).map((f) => f.id)).size,
      mean: sequentialMean(mine.map((s) => s.score)),
      meanEvaluated: sequentialMean(mine.flatMap((s) => orderScores(s).map((o) => o.evaluated))),
      meanGroundTruth: sequentialMean(mine.flatMap((s) => orderScores(s).map((o) => o.groundTruth))),
    };
    if (mine.some((s) => s.swapped)) {
      summary.meanForward = sequentialMean(mine.flatMap((s) => (s.forward ? [s.forward.ratio] : [])));
      summary.meanSwapped = sequentialMean(mine.flatMap((s) => (s.swapped ? [s.swapped.ratio] : [])));
    }
    return summary;
  });
  const means = summaries.flatMap((s) => (s.mean === null ? [] : [s.mean]));
  return {
    metricSet,
    samples: sampleIds.length,
    reviewed: reviewedIds.size,
    unreviewed: [...unreviewed],
    metrics: summaries,
    overall: { mean: sequentialMean(means), metrics: means.length },
    failures: [...failures],
  };
}

function orderScores(s: SampleMetricScore): OrderedScore[] {
  return [s.forward, s.swapped].filter((o): o is OrderedScore => o !== undefined);
}
