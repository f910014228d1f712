import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { getMetricSet, type MetricSetName } from '../eval/metrics.js';
import { RpvError, errorMessage } from '../util/errors.js';
import { exportFromStore, serveFileOf, type ServeFile } from './export.js';
import { readRateItems, setPairwise, type AnswersSource, type RateItems } from './items.js';
import { MediaResolver } from './media.js';
import { isLoopbackHost, startRateServer, type RateServer } from './server.js';
import { RateSession, checkRaterName, visibleRaterName, RateRequestError } from './session.js';
import { RatingStore } from './store.js';

/**
 * `rpv rate serve`: read the answers, open (or create) the ratings database, and serve the page.
 * The settings that shape what raters see (metric set, seed of the blind orders, pairwise rating)
 * are stored with the database the first time and must match on every later run, so a rater who
 * comes back finds the same items in the same order.
 *
 * Raters with tokens (`--raters`, now or in an earlier run on the same database) make tokens
 * required, on loopback too: otherwise anyone on the machine could read and change alice's ratings
 * by giving her name.
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
  /** More names raters reach the server by (a DNS name, a proxy's), for the Host check. */
  allowHosts?: string[];
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
  /** Server-side errors and refusals with their paths. Default: stderr. */
  log?: (line: string) => void;
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
  /** Lines to print at start (items whose video is missing and that show shard frames instead). */
  warnings: string[];
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
  const raterNames = (options.raters ?? []).map((name) => {
    try {
      return checkRaterName(name);
    } catch (err) {
      throw new RpvError(`rate: --raters '${visibleRaterName(name)}': ${(err as RateRequestError).message}`);
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
    const requireTokens = !isLoopbackHost(host) || raters.length > 0;
    if (requireTokens && raters.length === 0) {
      throw new RpvError(`rate: --host ${host} is not loopback, so raters need tokens: name them with --raters alice,bob`);
    }
    const media = await MediaResolver.create(items.items, { mediaRoot: options.mediaRoot, shards: options.shards, log: options.log });
    const session = new RateSession({ items: items.items, metricSet, seed, store });
    const stored = (await store.history()).length;
    const exportToken = randomBytes(32).toString('hex');
    const server = await startRateServer({
      session,
      media,
      host,
      port: options.port ?? 0,
      requireTokens,
      tokens: new Map(raters.map((r) => [r.token, r.name])),
      maxBodyBytes: options.maxBodyBytes,
      allowedHosts: options.allowHosts,
      log: options.log,
      exporter: { token: exportToken, run: (history) => exportFromStore(store, { history }) },
    });
    const wildcard = host === '0.0.0.0' || host === '::';
    const shownUrl = wildcard ? server.url.replace(/\/\/[^/]+:/, `//${os.hostname()}:`) : server.url;
    const serveFile = await writeServeFile(options.db, {
      pid: process.pid,
      url: wildcard ? `http://${host === '::' ? '[::1]' : '127.0.0.1'}:${server.port}/` : server.url,
      token: exportToken,
    }).catch(async (err: unknown) => {
      await server.close();
      throw err;
    });
    const mediaProblems = items.items.flatMap((i) => {
      const problem = media.problem(i);
      return problem ? [{ id: i.id, problem }] : [];
    });
    const warnings: string[] = [];
    const fallbacks = media.fallbacks;
    if (fallbacks.length > 0) {
      const listed = fallbacks.slice(0, 10).map((f) => `${f.id} (${f.file})`).join(', ') + (fallbacks.length > 10 ? `, ... and ${fallbacks.length - 10} more` : '');
      warnings.push(
        `rate: warning: ${fallbacks.length} item${fallbacks.length === 1 ? "'s video is" : "s' videos are"} missing under --media-root; ` +
          `${fallbacks.length === 1 ? 'it shows its' : 'they show their'} sampled frames from --shards instead: ${listed}`,
      );
    }
    return {
      url: shownUrl,
      server,
      session,
      items,
      raterLinks: raters.map((r) => ({ name: r.name, url: `${shownUrl}?token=${r.token}` })),
      requireTokens,
      stored,
      mediaProblems,
      warnings,
      close: async () => {
        await server.close();
        await removeServeFile(serveFile, exportToken);
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * Write `<db>.serve.json` for `rpv rate export` (see `export.ts`), readable by this user only. One
 * left by a server that was killed is replaced: this process holds the database's lock, so no
 * other server of it runs.
 */
async function writeServeFile(db: string, info: ServeFile): Promise<string> {
  const file = serveFileOf(db);
  try {
    await fs.rm(file, { force: true });
    await fs.writeFile(file, `${JSON.stringify(info)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    throw new RpvError(`rate: cannot write ${file} (what \`rpv rate export\` reads while the server runs): ${errorMessage(err)}`);
  }
  return file;
}

/** Remove `<db>.serve.json` if it is still this server's. */
async function removeServeFile(file: string, token: string): Promise<void> {
  const text = await fs.readFile(file, 'utf8').catch(() => null);
  let ours = false;
  try {
    ours = text !== null && (JSON.parse(text) as ServeFile).token === token;
  } catch {
    ours = false;
  }
  if (ours) await fs.rm(file, { force: true });
}
