import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { RpvError, errorMessage } from '../util/errors.js';

/**
 * The ratings database: one DuckDB file (see README.md for why DuckDB, and the measurements).
 *
 * - `ratings` is append-only: changing a rating adds a row; the current rating of (rater, item,
 *   metric, system) is its row with the highest `seq`, and the older rows are its history.
 * - Every insert is its own transaction, and DuckDB writes and fsyncs its write-ahead log before
 *   the commit returns, so a rating the server has acknowledged survives `kill -9` (tested) and a
 *   power cut; reopening replays the log.
 * - `raters` holds the names and access tokens; `meta` the settings the session was created with
 *   (metric set, seed), which later sessions on the same file must keep.
 *
 * DuckDB lets one process open a file for writing; a second one gets a clear error naming the
 * process that holds it (`RatingStoreBusyError`; `rpv rate export` then asks the server that holds
 * it, see `export.ts`).
 */

export const RATINGS_FORMAT = 'rpv-ratings';
export const RATINGS_VERSION = 1;

export type RatingKind = 'score' | 'pairwise';

export interface NewRating {
  rater: string;
  item: string;
  metric: string;
  /** The rated answer's system; for a pairwise rating the pair, `sysA vs sysB`. */
  system: string;
  kind: RatingKind;
  /** 1–10 for `score`; null for `pairwise`. */
  score: number | null;
  /** For `pairwise`: the preferred system, or `tie`; null for `score`. */
  choice: string | null;
  /** What the rater picked on the page: the answer's blind label, or A / B / tie. */
  label: string;
}

export interface StoredRating extends NewRating {
  /** Order of arrival; the highest per (rater, item, metric, system) is the current rating. */
  seq: number;
  /** The rating's number among its rater's ratings (1, 2, ...): what the rater is shown. */
  raterSeq?: number;
  /** ISO 8601, UTC, when the server stored it. */
  time: string;
}

export interface RaterRecord {
  name: string;
  token: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE SEQUENCE IF NOT EXISTS rating_seq START 1;
CREATE TABLE IF NOT EXISTS ratings (
  seq INTEGER PRIMARY KEY DEFAULT nextval('rating_seq'),
  rater VARCHAR NOT NULL, item VARCHAR NOT NULL, metric VARCHAR NOT NULL, system VARCHAR NOT NULL,
  kind VARCHAR NOT NULL, score DOUBLE, choice VARCHAR, label VARCHAR NOT NULL, time VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS raters (name VARCHAR PRIMARY KEY, token VARCHAR NOT NULL UNIQUE, created VARCHAR NOT NULL);
`;

const COLUMNS = 'seq, rater, item, metric, system, kind, score, choice, label, time';

/**
 * Files this process has open. DuckDB's file lock only keeps other processes out; two instances
 * on one file in the same process would both write, so a second open here is refused.
 */
const openHere = new Set<string>();

function fileKey(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** The file is open in another process (or a server of this one); `pid` names the holder. */
export class RatingStoreBusyError extends RpvError {
  readonly pid: number;
  constructor(message: string, pid: number) {
    super(message);
    this.name = 'RatingStoreBusyError';
    this.pid = pid;
  }
}

export interface OpenRatingStoreOptions {
  /** Create the file when missing (serve). Default false: a missing file is an error (export). */
  create?: boolean;
}

export class RatingStore {
  readonly file: string;
  private readonly instance: DuckDBInstance;
  private readonly connection: DuckDBConnection;
  private key = '';
  /** Statements run one at a time, in arrival order. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Ratings stored per rater, counted on the rater's first rating of this run (the file is this process's alone). */
  private readonly raterCounts = new Map<string, number>();

  private constructor(file: string, instance: DuckDBInstance, connection: DuckDBConnection) {
    this.file = file;
    this.instance = instance;
    this.connection = connection;
  }

  /** Open (or with `create`, create) a ratings database. */
  static async open(file: string, options: OpenRatingStoreOptions = {}): Promise<RatingStore> {
    const fresh = !existsSync(file);
    if (fresh && !options.create) throw new RpvError(`rate: ${file}: no such ratings database`);
    const key = fileKey(file);
    if (openHere.has(key)) throw new RatingStoreBusyError(`rate: ${file} is already open in this process (a rating server?): close it first`, process.pid);
    // Loaded here, not at import: the engine is a 70 MB native library that only rate commands need.
    const { DuckDBInstance: Instance } = await import('@duckdb/node-api');
    let instance: DuckDBInstance;
    try {
      instance = await Instance.create(file);
    } catch (err) {
      const msg = errorMessage(err);
      const holder = /Conflicting lock is held in (.*?) \(PID (\d+)\)/.exec(msg);
      if (holder) throw new RatingStoreBusyError(`rate: ${file} is in use by process ${holder[2]} (${holder[1]}), e.g. a running \`rpv rate serve\`: stop it first`, Number(holder[2]));
      throw new RpvError(`rate: ${file}: cannot open as a ratings database: ${msg}`);
    }
    const connection = await instance.connect();
    const store = new RatingStore(file, instance, connection);
    store.key = fileKey(file);
    openHere.add(store.key);
    try {
      if (!fresh) {
        const tables = (await connection.runAndReadAll("SELECT table_name FROM information_schema.tables WHERE table_name = 'meta'")).getRows();
        if (tables.length === 0) throw new RpvError(`rate: ${file} is a DuckDB file but not a ratings database (no meta table)`);
      }
      await connection.run(SCHEMA);
      const meta = await store.meta();
      if (meta.format === undefined) {
        await store.setMeta('format', RATINGS_FORMAT);
        await store.setMeta('version', String(RATINGS_VERSION));
        await store.setMeta('created', new Date().toISOString());
      } else if (meta.format !== RATINGS_FORMAT || Number(meta.version) > RATINGS_VERSION) {
        throw new RpvError(`rate: ${file}: format ${meta.format} version ${meta.version}; this rpv reads ${RATINGS_FORMAT} up to version ${RATINGS_VERSION}`);
      }
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  async meta(): Promise<Record<string, string>> {
    const rows = await this.serial(() => this.connection.runAndReadAll('SELECT key, value FROM meta'));
    return Object.fromEntries(rows.getRows().map((r) => [String(r[0]), String(r[1])]));
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.serial(() => this.connection.run('INSERT OR REPLACE INTO meta VALUES ($1, $2)', [key, value]));
  }

  /**
   * Store a rating; resolves once it is committed (in the fsynced write-ahead log), with its `seq`
   * and its `raterSeq`, the count of the rater's ratings up to it: counted in the file at the
   * rater's first rating of this run, then kept in memory (statements run one at a time, and no
   * other process can write the file while this one holds it).
   */
  async add(rating: NewRating): Promise<StoredRating> {
    const time = new Date().toISOString();
    return this.serial(async () => {
      const inserted = await this.connection.runAndReadAll(
        'INSERT INTO ratings (rater, item, metric, system, kind, score, choice, label, time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq',
        [rating.rater, rating.item, rating.metric, rating.system, rating.kind, rating.score, rating.choice, rating.label, time],
      );
      const seq = Number(inserted.getRows()[0]![0]);
      let raterSeq = this.raterCounts.get(rating.rater);
      if (raterSeq === undefined) {
        const counted = await this.connection.runAndReadAll('SELECT count(*) FROM ratings WHERE rater = $1 AND seq <= $2', [rating.rater, seq]);
        raterSeq = Number(counted.getRows()[0]![0]);
      } else raterSeq++;
      this.raterCounts.set(rating.rater, raterSeq);
      return { ...rating, seq, raterSeq, time };
    });
  }

  /** Current ratings (the latest per rater, item, metric and system), optionally of one rater, by seq. */
  async current(rater?: string): Promise<StoredRating[]> {
    const where = rater === undefined ? '' : 'WHERE rater = $1';
    const sql = `SELECT ${COLUMNS} FROM ratings ${where} QUALIFY row_number() OVER (PARTITION BY rater, item, metric, system ORDER BY seq DESC) = 1 ORDER BY seq`;
    return this.rows(sql, rater === undefined ? [] : [rater]);
  }

  /** Every rating ever stored, changed ones included, by seq. */
  async history(): Promise<StoredRating[]> {
    return this.rows(`SELECT ${COLUMNS} FROM ratings ORDER BY seq`, []);
  }

  private async rows(sql: string, values: string[]): Promise<StoredRating[]> {
    const reader = await this.serial(() => this.connection.runAndReadAll(sql, values));
    return reader.getRowObjectsJS().map((r) => ({
      seq: Number(r.seq),
      rater: String(r.rater),
      item: String(r.item),
      metric: String(r.metric),
      system: String(r.system),
      kind: r.kind as RatingKind,
      score: r.score === null ? null : Number(r.score),
      choice: r.choice === null ? null : String(r.choice),
      label: String(r.label),
      time: String(r.time),
    }));
  }

  async raters(): Promise<RaterRecord[]> {
    const reader = await this.serial(() => this.connection.runAndReadAll('SELECT name, token FROM raters ORDER BY created, name'));
    return reader.getRows().map((r) => ({ name: String(r[0]), token: String(r[1]) }));
  }

  /** The rater's record, created with a new random token when the name is new. */
  async addRater(name: string): Promise<RaterRecord> {
    const existing = (await this.raters()).find((r) => r.name === name);
    if (existing) return existing;
    const token = randomBytes(16).toString('hex');
    await this.serial(() => this.connection.run('INSERT INTO raters VALUES ($1, $2, $3)', [name, token, new Date().toISOString()]));
    return { name, token };
  }

  /** Close the file (checkpointing the log into it) after the statements in flight. */
  async close(): Promise<void> {
    await this.tail;
    this.connection.closeSync();
    this.instance.closeSync();
    openHere.delete(this.key);
  }
}
