/**
 * Evaluation: LLM-judged role-play metrics (MMRole-Eval protocol) and their aggregation.
 * The package's `src/index.ts` re-exports this list.
 */
export { MMROLE_METRICS, VIDEO2ROLEPLAY_METRICS, METRIC_SETS, getMetricSet } from './metrics.js';
export type { JudgeMetric, MetricContext, MetricSet, MetricSetName } from './metrics.js';
export { parseJudgeScores, normalizeReviewText, MAX_SCORE } from './parse.js';
export type { ScoreParse } from './parse.js';
export { scoreReview, combineOrders, summarizeScores, sequentialMean } from './aggregate.js';
export type { JudgeOrder, OrderedScore, SampleMetricScore, ReviewFailure, MetricSummary, EvalSummary } from './aggregate.js';
export { readReviewFile, summarizeReviews, reviewMetricNames, reviewScores } from './reviews.js';
export type { ReviewEntry, ReviewFileItem } from './reviews.js';
export { readAnswersFile, readAnswersItems, sampleFromItem } from './samples.js';
export type { EvalSample, AnswersFileItem } from './samples.js';
export { JudgeClient, JudgeGaveUpError, judgeApiKeyFromEnv, chatCompletionsUrl, parseRetryAfter } from './client.js';
export type { JudgeMessage, ChatContentPart, JudgeClientOptions, JudgeStats, JudgeReply } from './client.js';
export { JudgeCache, hashRequest, JUDGE_CACHE_FILE } from './cache.js';
export { judgePromptText, judgeMessages, taskInstruction, scoreReminder, JUDGE_SYSTEM_PROMPT } from './prompt.js';
export { judgeSamples } from './judge.js';
export type { JudgeRunOptions, JudgeRunResult, JudgeRunCounts } from './judge.js';
export { writeEvalReport, formatResultsCsv, formatReportCsv, formatPythonFloat, formatSummaryTable } from './report.js';
export type { EvalReport } from './report.js';
export { evaluateHeldOut } from './heldout.js';
export type { HeldOutOptions, HeldOutResult, HeldOutPerplexity } from './heldout.js';
export { referenceTokens, lcsLength, rougeL, bleuStats, bleuFromStats, corpusBleu, scoreReferences, formatReferenceTable, formatReferenceCsv, REFERENCE_METRICS } from './reference.js';
export type { ReferenceMetric, ReferenceScores, ReferenceGroupScores, BleuStats } from './reference.js';
