/**
 * Human evaluation: the rating page and its store, inter-rater agreement, judge-vs-human
 * correlation. The package's `src/index.ts` re-exports this list.
 */
export { krippendorffAlpha, alphaBootstrap, quantile, ALPHA_LEVELS } from './krippendorff.js';
export type { AlphaLevel, AlphaResult, AlphaInterval, AlphaBootstrapOptions, RatingValue } from './krippendorff.js';
export { correlate, spearman, kendallTauB, pearson, averageRanks } from './correlation.js';
export type { Correlation } from './correlation.js';
export { readRateItems, parseAnswersSource, setPairwise, pairName } from './items.js';
export type { AnswersSource, RateItem, RateItems, RateAnswer, RateTurn, RateMode, ReadRateItemsOptions } from './items.js';
export { raterItemOrder, answerOrder, blindLabels, ANSWER_LABELS } from './blind.js';
export { RatingStore, RatingStoreBusyError, RATINGS_FORMAT, RATINGS_VERSION } from './store.js';
export type { NewRating, StoredRating, RatingKind, RaterRecord, OpenRatingStoreOptions } from './store.js';
export { RateSession, RateRequestError, checkRaterName, visibleRaterName, SCORE_MIN, SCORE_MAX } from './session.js';
export type { RateSessionOptions, ProgressView, ItemView, SavedView } from './session.js';
export { MediaResolver, framesView } from './media.js';
export type { MediaOptions, MediaInfo, MediaKind, MediaFallback, FramesView } from './media.js';
export { startRateServer, isLoopbackHost } from './server.js';
export type { RateServerOptions, RateServer } from './server.js';
export { serveRatings } from './serve.js';
export type { ServeRatingsOptions, RatingsService } from './serve.js';
export { readRatingsCsv, formatRatingsCsv, parseCsv, ratingRow, escapeCsvFormula, unescapeCsvFormula, RATINGS_CSV_COLUMNS } from './csv.js';
export type { RatingRow } from './csv.js';
export { exportRatings, exportFromStore, serveFileOf } from './export.js';
export type { ExportOptions, ExportedRating, RatingsExport, ServeFile } from './export.js';
export { ratingsAgreement, formatAgreementTable } from './agreement.js';
export type { AgreementOptions, MetricAgreement } from './agreement.js';
export { compareJudgeWithHumans, readJudgeScores, parseJudgeSource, formatComparison } from './compare.js';
export type { Comparison, MetricComparison, SystemMeans, JudgeScores, JudgeSource, JudgeScoreKind } from './compare.js';
