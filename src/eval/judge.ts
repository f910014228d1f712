import { errorMessage } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
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
import { JudgeGaveUpError, type JudgeMessage, type JudgeClient } from './client.js';
import type { MetricSet } from './metrics.js';
import { judgeMessages, scoreReminder } from './prompt.js';
import type { ReviewEntry, ReviewFileItem } from './reviews.js';
import type { EvalSample } from './samples.js';

/**
 * Judge every sample on every metric of a set: one call per sample, metric and order, all in
 * flight at once up to the client's concurrency. A review without a readable score pair is asked
 * again (the judge sees its own reply and a reminder of the format) up to `parseRetries` times,
 * then reported as a failure with its reason and text. A call that fails after all HTTP retries
 * is a failure too; an error that retrying cannot fix (401, 404, a bad model name) stops the run.
 */
export interface JudgeRunOptions {
  metricSet: MetricSet;
  client: JudgeClient;
  /** Also judge with the ground truth shown first and average both orders' ratios. */
  swap?: boolean;
  /** Extra asks after a review without a readable score pair. */
  parseRetries?: number;
  /** Folder that samples' `image` paths are relative to: attach images for a multimodal judge. */
  imageDir?: string | null;
  /** Ticks once per finished review. */
  progress?: Progress | null;
}

export interface JudgeRunCounts {
  samples: number;
  /** Samples with an answer, judged. */
  judged: number;
  /** Reviews asked for: judged samples x metrics x orders. */
  reviews: number;
  /** Reviews that yielded a score. */
  scored: number;
  /** Reviews that stayed unparseable or whose call failed. */
  failed: number;
  /** Extra asks after unparseable reviews. */
  parseRetries: number;
}

export interface JudgeRunResult {
  summary: EvalSummary;
  /** The samples with their reviews, in MMRole's review-file layout. */
  reviews: ReviewFileItem[];
  counts: JudgeRunCounts;
}

export async function judgeSamples(samples: readonly EvalSample[], options: JudgeRunOptions): Promise<JudgeRunResult> {
  const { metricSet, client, swap = false, parseRetries = 2, imageDir = null, progress = null } = options;
  const orders: JudgeOrder[] = swap ? ['forward', 'swapped'] : ['forward'];
  const judgeable = samples.filter((s) => s.answer !== null);
  const unreviewed = samples.filter((s) => s.answer === null).map((s) => ({ id: s.id, reason: 'no evaluated answer' }));
  const counts: JudgeRunCounts = {
    samples: samples.length,
    judged: judgeable.length,
    reviews: judgeable.length * metricSet.metrics.length * orders.length,
    scored: 0,
    failed: 0,
    parseRetries: 0,
  };
  if (progress) progress.total = counts.reviews;

  type Outcome = { sample: EvalSample; metric: string; order: JudgeOrder; text: string | null; score?: OrderedScore; failure?: ReviewFailure };
  let fatal: unknown = null;
  const judgeOne = async (sample: EvalSample, metricIndex: number, order: JudgeOrder): Promise<Outcome> => {
    const metric = metricSet.metrics[metricIndex]!;
    const base = { sample, metric: metric.name, order };
    if (fatal) return { ...base, text: null, failure: { id: sample.id, metric: metric.name, order, reason: 'run stopped' } };
    let messages: JudgeMessage[] = await judgeMessages(sample, metric, metricSet, order, { imageDir });
    let text: string | null = null;
    let reason = '';
    for (let attempt = 0; attempt <= parseRetries; attempt++) {
      try {
        text = (await client.chat(messages)).text;
      } catch (err) {
        if (!(err instanceof JudgeGaveUpError)) fatal ??= err;
        return { ...base, text, failure: { id: sample.id, metric: metric.name, order, reason: errorMessage(err), ...(text ? { review: text } : {}) } };
      }
      const result = scoreReview(text, order);
      if (result.ok) return { ...base, text, score: result.score };
      reason = result.reason;
      if (attempt < parseRetries) {
        counts.parseRetries++;
        messages = [...messages, { role: 'assistant', content: text }, { role: 'user', content: scoreReminder(reason) }];
      }
    }
    return { ...base, text, failure: { id: sample.id, metric: metric.name, order, reason: `unparseable after ${parseRetries + 1} asks: ${reason}`, review: text ?? undefined } };
  };

  const tasks: Promise<Outcome>[] = [];
  for (const sample of judgeable) {
    for (let m = 0; m < metricSet.metrics.length; m++) {
      for (const order of orders) {
        tasks.push(
          judgeOne(sample, m, order).then((outcome) => {
            progress?.tick(1, { failed: counts.failed + (outcome.failure ? 1 : 0) });
            if (outcome.failure) counts.failed++;
            else counts.scored++;
            return outcome;
          }),
        );
      }
    }
  }
  const outcomes = await Promise.all(tasks);
  progress?.finish();
  if (fatal) throw fatal;

  const scores: SampleMetricScore[] = [];
  const failures: ReviewFailure[] = [];
  const reviews: ReviewFileItem[] = [];
  const byKey = new Map(outcomes.map((o) => [`${o.sample.id}\u0000${o.metric}\u0000${o.order}`, o]));
  for (const sample of samples) {
    const item: ReviewFileItem = { ...sample.source, id: sample.id };
    if (sample.answer !== null) {
      const forward: Record<string, ReviewEntry> = {};
      const swapped: Record<string, ReviewEntry> = {};
      for (const metric of metricSet.metrics) {
        const got: Partial<Record<JudgeOrder, OrderedScore>> = {};
        let complete = true;
        for (const order of orders) {
          const o = byKey.get(`${sample.id}\u0000${metric.name}\u0000${order}`)!;
          const entry: ReviewEntry = { review: o.text ?? '', score: {} };
          if (o.score) {
            got[order] = o.score;
            entry.score = order === 'forward' ? [o.score.evaluated, o.score.groundTruth] : [o.score.groundTruth, o.score.evaluated];
          } else {
            complete = false;
            failures.push(o.failure!);
          }
          (order === 'forward' ? forward : swapped)[metric.name] = entry;
        }
        const combined = complete ? combineOrders(sample.id, metric.name, got.forward, got.swapped) : null;
        if (combined) scores.push(combined);
      }
      item.rm_review = forward;
      if (swap) item.rm_review_swapped = swapped;
    }
    reviews.push(item);
  }
  const summary = summarizeScores({
    metricSet: metricSet.name,
    metrics: metricSet.metrics.map((m) => m.name),
    sampleIds: samples.map((s) => s.id),
    scores,
    failures,
    unreviewed,
  });
  return { summary, reviews, counts };
}
