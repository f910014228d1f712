import { promises as fs } from 'node:fs';
import { RpvError, errorMessage } from '../util/errors.js';
import { ratingRow, type RatingRow } from './csv.js';
import { RatingStore, RatingStoreBusyError } from './store.js';

/**
 * `rpv rate export`: the ratings of a database as rows for the CSV or JSON file. By default the
 * current rating of each (rater, item, metric, answer); with `history`, every rating ever stored,
 * changed ones included, each with its `seq` and whether it is still the current one.
 *
 * While `rpv rate serve` runs, its process holds DuckDB's lock on the file and no other process
 * may open it, not even read-only. The server therefore writes `<db>.serve.json` beside the
 * database (owner-only, mode 0600: its pid, a loopback URL and an export token) and removes it
 * when it stops; an export that finds the file locked by that pid asks the server
 * (`GET /api/export`, the token as bearer), which reads the rows on its own connection, between
 * ratings. The token never reaches the rating page, so raters cannot export.
 */

export interface ExportOptions {
  /** Every stored rating, not only the current ones. Default false. */
  history?: boolean;
}

export interface ExportedRating extends RatingRow {
  seq?: number;
  current?: boolean;
}

export interface RatingsExport {
  rows: ExportedRating[];
  /** Ratings per rater (current ones), by name, for the summary line. */
  raters: Record<string, number>;
  /** Ratings ever stored (changes included). */
  stored: number;
  /** Set when the rows came from the running server that holds the file. */
  server?: { pid: number; url: string };
}

/** What a running `rpv rate serve` keeps beside its database for `rpv rate export`. */
export interface ServeFile {
  pid: number;
  /** A URL of the server reachable from this machine. */
  url: string;
  /** Bearer token of `GET /api/export`. */
  token: string;
}

/** `ratings.duckdb` -> `ratings.duckdb.serve.json`. */
export function serveFileOf(db: string): string {
  return `${db}.serve.json`;
}

export async function exportRatings(file: string, options: ExportOptions = {}): Promise<RatingsExport> {
  let store: RatingStore;
  try {
    store = await RatingStore.open(file);
  } catch (err) {
    if (err instanceof RatingStoreBusyError) return exportThroughServer(file, err.pid, options);
    throw err;
  }
  try {
    return await exportFromStore(store, options);
  } finally {
    await store.close();
  }
}

/** The export of an open store (what the server runs for `GET /api/export`). */
export async function exportFromStore(store: RatingStore, options: ExportOptions = {}): Promise<RatingsExport> {
  const current = await store.current();
  const all = await store.history();
  const raters: Record<string, number> = {};
  for (const r of current) raters[r.rater] = (raters[r.rater] ?? 0) + 1;
  let rows: ExportedRating[];
  if (options.history) {
    const latest = new Set(current.map((r) => r.seq));
    rows = all.map((r) => ({ ...ratingRow(r), seq: r.seq, current: latest.has(r.seq) }));
  } else {
    rows = current.map(ratingRow);
  }
  const byName = Object.fromEntries(Object.entries(raters).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { rows, raters: byName, stored: all.length };
}

/** Ask the `rpv rate serve` holding `file` (process `pid`) for the export. */
async function exportThroughServer(file: string, pid: number, options: ExportOptions): Promise<RatingsExport> {
  const serveFile = serveFileOf(file);
  let info: ServeFile;
  try {
    info = JSON.parse(await fs.readFile(serveFile, 'utf8')) as ServeFile;
  } catch (err) {
    throw new RpvError(`rate: ${file} is in use by process ${pid}, and ${serveFile} cannot be read (${errorMessage(err)}), so it is no running \`rpv rate serve\` to export through: stop that process first`);
  }
  if (info.pid !== pid) {
    throw new RpvError(`rate: ${file} is in use by process ${pid}, but ${serveFile} is from process ${info.pid}, so it is no running \`rpv rate serve\` to export through: stop process ${pid} first`);
  }
  let body: unknown;
  try {
    const res = await fetch(new URL(`api/export?history=${options.history === true}`, info.url), { headers: { authorization: `Bearer ${info.token}` } });
    body = await res.json();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${(body as { error?: string }).error ?? ''}`);
  } catch (err) {
    throw new RpvError(`rate: ${file} is in use by \`rpv rate serve\` (process ${pid}, ${info.url}), and exporting through it failed: ${errorMessage(err)}`);
  }
  return { ...(body as RatingsExport), server: { pid, url: info.url } };
}
