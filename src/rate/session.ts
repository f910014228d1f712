import type { MetricSet } from '../eval/metrics.js';
import { otherPartyName } from '../eval/prompt.js';
import { blindLabels, raterItemOrder } from './blind.js';
import { pairName, type RateItem, type RateTurn } from './items.js';
import type { NewRating, RatingStore, StoredRating } from './store.js';

/**
 * What the rating page asks of the server, without HTTP: a rater's progress, one item as the rater
 * sees it (blind), and storing a rating after checking it. Everything sent to the page goes through
 * here, and none of it names a system: answers are labelled A, B, ... per rater and item.
 */

/** A refused request: the HTTP status and the message the page shows. */
export class RateRequestError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'RateRequestError';
    this.status = status;
  }
}

export const SCORE_MIN = 1;
export const SCORE_MAX = 10;
export const PAIRWISE_CHOICES = ['A', 'B', 'tie'] as const;
/** Longest rater name: names go into CSV exports and file names people read. */
export const MAX_RATER_NAME = 64;

export interface RateSessionOptions {
  items: readonly RateItem[];
  metricSet: MetricSet;
  /** Seed of the blind orders (stored with the database so they never change). */
  seed: string;
  store: RatingStore;
}

export interface ProgressView {
  rater: string;
  /** Items in this rater's order, each with how many of its ratings are given. */
  items: { item: string; rated: number; needed: number; done: boolean }[];
  done: number;
  total: number;
  /** 0-based position of the first item not done, or null when all are. */
  next: number | null;
}

export interface ItemView {
  item: string;
  /** 0-based position in the rater's order. */
  position: number;
  total: number;
  role: string;
  script: string | null;
  otherParty: string;
  question: string;
  profile: string | null;
  summary: string | null;
  history: RateTurn[];
  mode: RateItem['mode'];
  answers: { label: string; text: string }[];
  metrics: { name: string; rubric: string }[];
  /** Current ratings: `scores`: metric -> label -> score; `pairwise`: metric -> 'A' | 'B' | 'tie'. */
  ratings: Record<string, Record<string, number> | string>;
}

export interface SavedView {
  saved: true;
  /** The rating's number among this rater's ratings (changes included): others' are not counted. */
  seq: number;
  time: string;
  item: string;
  metric: string;
  score: number | string;
  answer?: string;
}

/**
 * Characters a rater name may not hold, each class with why: names are shown to people, written
 * into CSV files and compared as strings, so what a name looks like must be what it is.
 */
const NAME_REFUSALS: { pattern: RegExp; what: string; why: string }[] = [
  // eslint-disable-next-line no-control-regex
  { pattern: /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/u, what: 'control characters', why: 'they break the lines and files the name is written to' },
  { pattern: /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u, what: 'bidirectional controls', why: 'they reorder how the name and the text around it are shown' },
  { pattern: /[\u200b-\u200d\u2060\ufeff]/u, what: 'zero-width characters', why: 'two names that look the same would be different raters' },
];

/** `U+202E` for a code point. */
const codePoint = (ch: string) => `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/** The name with every character a name may not hold written as `<U+202E>`, for messages. */
export function visibleRaterName(name: string): string {
  return [...name].map((ch) => (NAME_REFUSALS.some((r) => r.pattern.test(ch)) ? `<${codePoint(ch)}>` : ch)).join('');
}

/**
 * A rater name as typed on the page or given on the command line: 1–64 characters, no control,
 * bidirectional or zero-width characters (checked before the spaces around it are trimmed, since
 * `trim` would silently drop a U+FEFF).
 */
export function checkRaterName(name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '') throw new RateRequestError(400, 'rater: expected a name');
  const chars = [...name];
  for (const { pattern, what, why } of NAME_REFUSALS) {
    const at = chars.findIndex((ch) => pattern.test(ch));
    if (at >= 0) throw new RateRequestError(400, `rater: ${what} are not allowed in names (${codePoint(chars[at]!)} at character ${at + 1}): ${why}`);
  }
  const trimmed = name.trim();
  if (trimmed.length > MAX_RATER_NAME) throw new RateRequestError(400, `rater: names are at most ${MAX_RATER_NAME} characters`);
  return trimmed;
}

export class RateSession {
  readonly items: readonly RateItem[];
  readonly metricSet: MetricSet;
  readonly seed: string;
  readonly store: RatingStore;
  private readonly byId: Map<string, RateItem>;
  private readonly metricNames: Set<string>;
  private readonly orders = new Map<string, string[]>();

  constructor(options: RateSessionOptions) {
    this.items = options.items;
    this.metricSet = options.metricSet;
    this.seed = options.seed;
    this.store = options.store;
    this.byId = new Map(options.items.map((i) => [i.id, i]));
    this.metricNames = new Set(options.metricSet.metrics.map((m) => m.name));
  }

  item(id: string): RateItem | undefined {
    return this.byId.get(id);
  }

  /** The rater's item order (ids). */
  order(rater: string): string[] {
    let order = this.orders.get(rater);
    if (!order) {
      order = raterItemOrder(this.items.map((i) => i.id), rater, this.seed);
      this.orders.set(rater, order);
    }
    return order;
  }

  /** Ratings an item needs from one rater: one per metric, per answer unless pairwise. */
  needed(item: RateItem): number {
    return this.metricSet.metrics.length * (item.mode === 'pairwise' ? 1 : item.answers.length);
  }

  async progress(rater: string): Promise<ProgressView> {
    const rated = new Map<string, number>();
    for (const r of await this.store.current(rater)) {
      const item = this.byId.get(r.item);
      if (!item || !this.metricNames.has(r.metric) || !this.systemStillRated(item, r)) continue;
      rated.set(r.item, (rated.get(r.item) ?? 0) + 1);
    }
    const items = this.order(rater).map((id) => {
      const needed = this.needed(this.byId.get(id)!);
      const n = Math.min(rated.get(id) ?? 0, needed);
      return { item: id, rated: n, needed, done: n >= needed };
    });
    const next = items.findIndex((i) => !i.done);
    return { rater, items, done: items.filter((i) => i.done).length, total: items.length, next: next < 0 ? null : next };
  }

  /** Whether a stored rating still matches the item (same answers / pair as now). */
  private systemStillRated(item: RateItem, r: StoredRating): boolean {
    if (item.mode === 'pairwise') return r.kind === 'pairwise' && r.system === pairName(item);
    return r.kind === 'score' && item.answers.some((a) => a.system === r.system);
  }

  async view(rater: string, id: string): Promise<ItemView> {
    const item = this.byId.get(id);
    if (!item) throw new RateRequestError(404, `unknown item '${id}'`);
    const labels = blindLabels(item, rater, this.seed);
    const labelOf = new Map(labels.map((l) => [l.system, l.label]));
    const ratings: ItemView['ratings'] = {};
    for (const r of await this.store.current(rater)) {
      if (r.item !== id || !this.metricNames.has(r.metric) || !this.systemStillRated(item, r)) continue;
      if (r.kind === 'pairwise') ratings[r.metric] = r.choice === 'tie' ? 'tie' : labelOf.get(r.choice!)!;
      else ((ratings[r.metric] ??= {}) as Record<string, number>)[labelOf.get(r.system)!] = r.score!;
    }
    const order = this.order(rater);
    const otherParty = otherPartyName(item);
    return {
      item: id,
      position: order.indexOf(id),
      total: order.length,
      role: item.role,
      script: item.script,
      otherParty,
      question: item.question,
      profile: item.profile,
      summary: item.summary,
      history: item.history,
      mode: item.mode,
      answers: labels.map(({ label, text }) => ({ label, text })),
      metrics: this.metricSet.metrics.map((m) => ({ name: m.name, rubric: m.aspect({ role: item.role, otherParty }).replace(/^[^:]*:\s*/, '') })),
      ratings,
    };
  }

  /**
   * Check a rating sent by the page (`{item, metric, score, answer?}`; the rater is known from the
   * name or token) and store it. Refusals are RateRequestErrors; nothing is stored then.
   */
  async rate(rater: string, body: Record<string, unknown>): Promise<SavedView> {
    for (const key of Object.keys(body)) {
      if (!['rater', 'item', 'metric', 'score', 'answer'].includes(key)) throw new RateRequestError(400, `unknown field '${key}'; a rating is {rater, item, metric, score, answer?}`);
    }
    if (typeof body.item !== 'string') throw new RateRequestError(400, 'item: expected the item id (a string)');
    const item = this.byId.get(body.item);
    if (!item) throw new RateRequestError(400, `unknown item '${body.item}'`);
    if (typeof body.metric !== 'string' || !this.metricNames.has(body.metric)) {
      throw new RateRequestError(400, `unknown metric ${JSON.stringify(body.metric)}; expected one of ${[...this.metricNames].join(', ')}`);
    }
    const labels = blindLabels(item, rater, this.seed);
    let rating: NewRating;
    if (item.mode === 'pairwise') {
      if (body.answer !== undefined) throw new RateRequestError(400, `answer: item '${item.id}' is rated pairwise: give score A, B or tie and no answer`);
      const choice = body.score;
      if (typeof choice !== 'string' || !(PAIRWISE_CHOICES as readonly string[]).includes(choice)) {
        throw new RateRequestError(400, `score: item '${item.id}' is rated pairwise: expected "A", "B" or "tie", found ${JSON.stringify(choice)}`);
      }
      const winner = choice === 'tie' ? 'tie' : labels.find((l) => l.label === choice)!.system;
      rating = { rater, item: item.id, metric: body.metric, system: pairName(item), kind: 'pairwise', score: null, choice: winner, label: choice };
    } else {
      const score = body.score;
      if (typeof score !== 'number' || !Number.isInteger(score) || score < SCORE_MIN || score > SCORE_MAX) {
        throw new RateRequestError(400, `score: expected a whole number from ${SCORE_MIN} to ${SCORE_MAX}, found ${JSON.stringify(score)}`);
      }
      const label = body.answer ?? (labels.length === 1 ? 'A' : undefined);
      const picked = labels.find((l) => l.label === label);
      if (!picked) {
        throw new RateRequestError(400, `answer: item '${item.id}' has answers ${labels.map((l) => l.label).join(', ')}; found ${JSON.stringify(body.answer)}`);
      }
      rating = { rater, item: item.id, metric: body.metric, system: picked.system, kind: 'score', score, choice: null, label: picked.label };
    }
    const stored = await this.store.add(rating);
    return {
      saved: true,
      seq: stored.raterSeq!,
      time: stored.time,
      item: item.id,
      metric: rating.metric,
      score: rating.kind === 'pairwise' ? rating.label : rating.score!,
      ...(rating.kind === 'score' ? { answer: rating.label } : {}),
    };
  }
}
