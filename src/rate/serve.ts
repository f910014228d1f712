import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { getMetricSet, type MetricSetName } from '../eval/metrics.js';
import { RpvError } from '../util/errors.js';
import { readRateItems, setPairwise, type AnswersSource, type RateItems } from './items.js';
import { MediaResolver } from './media.js';
import { isLoopbackHost, startRateServer, type RateServer } from './server.js';
import { RateSession, checkRaterName, RateRequestError } from './session.js';
import { RatingStore } from './store.js';

/**
 * `rpv rate serve`: read the answers, open (or create) the ratings database, and serve the page.
 * The settings that shape what raters see (metric set, seed of the blind orders, pairwise rating)
 * are stored with the database the first time and must match on every later run, so a rater who
 * comes back finds the same items in the same order.
 */

export interface ServeRatingsOptions {
  /** Answers files, one per system (or items carrying several systems' answers). */
  answers: AnswersSource[];
  /** The ratings database (DuckDB file), created when missing. */
  db: string;
  /** Default `video2roleplay`. */
  metrics?: MetricSetName;
  /** Default 127.0.0.1. Any other address requires rater tokens. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** The export folder videos (and images) are served from. */
  mediaRoot?: string | null;
  /** Shards to show sampled frames from when there is no video. */
  shards?: string | null;
  /** Raters to create tokens for (kept in the database; existing ones keep theirs). */
  raters?: string[];
  /** Seed of the blind orders; default: random, chosen when the database is created. */
  seed?: string;
  /** Rate two-answer items pairwise (A / B / tie). Default true. */
  pairwise?: boolean;
  /** Largest request body. Default 16 KiB. */
  maxBodyBytes?: number;
}

export interface RatingsService {
  url: string;
  server: RateServer;
  session: RateSession;
  items: RateItems;
  /** Each rater with a token and their personal link. */
  raterLinks: { name: string; url: string }[];
  requireTokens: boolean;
  /** Ratings already in the database when the server started. */
  stored: number;
  /** Items whose media cannot be shown, with the reason. */
  mediaProblems: { id: string; problem: string }[];
  close(): Promise<void>;
}

/** Check a setting against the one stored with the database, storing it the first time. */
async function keepSetting(store: RatingStore, meta: Record<string, string>, key: string, value: string | undefined, flag: string): Promise<string | undefined> {
  const stored = meta[key];
  if (stored === undefined) {
    if (value !== undefined) await store.setMeta(key, value);
    return value;
  }
  if (value !== undefined && value !== stored) {
    throw new RpvError(`rate: ${store.file} was started with ${flag} ${stored}; this run asks for ${value} (raters would see a different session): use a new --db or the same ${flag}`);
  }
  return stored;
}

export async function serveRatings(options: ServeRatingsOptions): Promise<RatingsService> {
  const host = options.host ?? '127.0.0.1';
  const requireTokens = !isLoopbackHost(host);
  const raterNames = (options.raters ?? []).map((name) => {
    try {
      return checkRaterName(name);
    } catch (err) {
      throw new RpvError(`rate: --raters '${name}': ${(err as RateRequestError).message}`);
    }
  });
  const items = await readRateItems(options.answers, { pairwise: options.pairwise ?? true });
  const store = await RatingStore.open(options.db, { create: true });
  try {
    const meta = await store.meta();
    const metrics = (await keepSetting(store, meta, 'metrics', options.metrics ?? (meta.metrics ? undefined : 'video2roleplay'), '--metrics'))!;
    const seed = (await keepSetting(store, meta, 'seed', options.seed ?? (meta.seed ? undefined : randomBytes(4).toString('hex')), '--seed'))!;
    const pairwise = await keepSetting(store, meta, 'pairwise', options.pairwise === undefined ? (meta.pairwise ? undefined : 'true') : String(options.pairwise), '--pairwise');
    setPairwise(items.items, pairwise === 'true');
    const metricSet = getMetricSet(metrics);
    for (const name of raterNames) await store.addRater(name);
    const raters = await store.raters();
    if (requireTokens && raters.length === 0) {
      throw new RpvError(`rate: --host ${host} is not loopback, so raters need tokens: name them with --raters alice,bob`);
    }
    const media = await MediaResolver.create(items.items, { mediaRoot: options.mediaRoot, shards: options.shards });
    const session = new RateSession({ items: items.items, metricSet, seed, store });
    const stored = (await store.history()).length;
    const server = await startRateServer({
      session,
      media,
      host,
      port: options.port ?? 0,
      requireTokens,
      tokens: new Map(raters.map((r) => [r.token, r.name])),
      maxBodyBytes: options.maxBodyBytes,
    });
    const shownUrl = host === '0.0.0.0' || host === '::' ? server.url.replace(/\/\/[^/]+:/, `//${os.hostname()}:`) : server.url;
    const mediaProblems = items.items.flatMap((i) => {
      const info = media.info(i);
      return info.problem ? [{ id: i.id, problem: info.problem }] : [];
    });
    return {
      url: shownUrl,
      server,
      session,
      items,
      raterLinks: raters.map((r) => ({ name: r.name, url: `${shownUrl}?token=${r.token}` })),
      requireTokens,
      stored,
      mediaProblems,
      close: async () => {
        await server.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
