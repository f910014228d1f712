/**
 * Human evaluation: the rating page and its store, inter-rater agreement, judge-vs-human
 * correlation. The package's `src/index.ts` re-exports this list.
 */
export { krippendorffAlpha, alphaBootstrap, quantile, ALPHA_LEVELS } from './krippendorff.js';
export type { AlphaLevel, AlphaResult, AlphaInterval, AlphaBootstrapOptions, RatingValue } from './krippendorff.js';
export { correlate, spearman, kendallTauB, pearson, averageRanks } from './correlation.js';
export type { Correlation } from './correlation.js';
