import { ratingRow, type RatingRow } from './csv.js';
import { RatingStore } from './store.js';

/**
 * `rpv rate export`: the ratings of a database as rows for the CSV or JSON file. By default the
 * current rating of each (rater, item, metric, answer); with `history`, every rating ever stored,
 * changed ones included, each with its `seq` and whether it is still the current one.
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
}

export async function exportRatings(file: string, options: ExportOptions = {}): Promise<RatingsExport> {
  const store = await RatingStore.open(file);
  try {
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
  } finally {
    await store.close();
  }
}
