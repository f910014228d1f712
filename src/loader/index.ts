/** The streaming loader's public surface (re-exported from src/index.ts). */
export { createLoader, Loader, DEFAULT_PREFETCH_BYTES, DEFAULT_CACHE_LIMIT_BYTES } from './loader.js';
export type { LoaderOptions, LoaderInfo, LoaderStats } from './loader.js';
export { collate } from './collate.js';
export type { Batch, CollateContext, DialogueSample, Sample } from './collate.js';
export { epochOrder, planRank } from './order.js';
export type { EpochOrder, OrderOptions, RankPlan, RankPlanOptions } from './order.js';
export { LOADER_STATE_FORMAT, LOADER_STATE_VERSION, validateLoaderState } from './state.js';
export type { LoaderState } from './state.js';
export { defaultCacheDir } from '../shard/cache.js';
export type { RetryOptions } from '../shard/fetch.js';
