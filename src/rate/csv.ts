import { promises as fs } from 'node:fs';
import { RpvError, errorMessage } from '../util/errors.js';
import type { RatingKind, StoredRating } from './store.js';

/**
 * The ratings CSV that `rpv rate export` writes and `rpv rate agreement` / `compare` read:
 *
 *     rater,item,metric,score,system,time,kind
 *
 * `score` is 1–10 for a scored answer; for a pairwise rating it is the preferred system, or `tie`,
 * and `system` names the pair (`sysA vs sysB`). `kind` (`score` or `pairwise`) says which. Only
 * `rater,item,metric,score` are required when reading, so ratings collected elsewhere can be
 * analysed too (rows without `kind` are pairwise when `score` is not a number). RFC 4180 quoting,
 * UTF-8.
 *
 * Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a
 * formula (a rater named `=cmd|' /C calc'!A1` would run on the analyst's machine), so such a cell is
 * written with a `'` before it, as OWASP's CSV-injection guidance says; a value that already starts
 * with `'` before one of them gets one more. Reading takes that one `'` off again, so a file
 * round-trips exactly.
 */

export const RATINGS_CSV_COLUMNS = ['rater', 'item', 'metric', 'score', 'system', 'time', 'kind'] as const;

/** One rating as exported and read back. */
export interface RatingRow {
  rater: string;
  item: string;
  metric: string;
  /** A number (scores) or a category (pairwise: the preferred system, or `tie`). */
  score: number | string;
  /** The rated answer's system, the pair for pairwise ratings, or '' when the file has none. */
  system: string;
  time: string;
  kind: RatingKind;
  /** 1-based line of the row in the file it was read from. */
  line?: number;
}

/** A stored rating as a row. */
export function ratingRow(r: StoredRating): RatingRow {
  return { rater: r.rater, item: r.item, metric: r.metric, score: r.kind === 'pairwise' ? r.choice! : r.score!, system: r.system, time: r.time, kind: r.kind };
}

/** A value a spreadsheet would take as a formula, behind any quotes added before (see above). */
const FORMULA_START = /^'*[=+\-@\t\r]/;

/** `=1+2` -> `'=1+2`: the cell as spreadsheet tools show it, never run. */
export function escapeCsvFormula(v: string): string {
  return FORMULA_START.test(v) ? `'${v}` : v;
}

/** The inverse of `escapeCsvFormula`. */
export function unescapeCsvFormula(v: string): string {
  return v.startsWith("'") && FORMULA_START.test(v) ? v.slice(1) : v;
}

function field(raw: string): string {
  const v = escapeCsvFormula(raw);
  return /[",\r\n]/.test(v) || /^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** The CSV text; rows with `seq` (a history export) add the columns `seq,current`. */
export function formatRatingsCsv(rows: readonly (RatingRow & { seq?: number; current?: boolean })[]): string {
  const history = rows.some((r) => r.seq !== undefined);
  const lines = [[...RATINGS_CSV_COLUMNS, ...(history ? ['seq', 'current'] : [])].join(',')];
  for (const r of rows) {
    const extra = history ? [String(r.seq ?? ''), String(r.current ?? '')] : [];
    lines.push([r.rater, r.item, r.metric, String(r.score), r.system, r.time, r.kind, ...extra].map(field).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** Split CSV text into records, each with the line it starts on. Throws on an unclosed quote. */
export function parseCsv(text: string, file: string): { line: number; fields: string[] }[] {
  const records: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let cur = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  let fieldStarted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRecord = () => {
    fields.push(cur);
    if (!(fields.length === 1 && fields[0] === '')) records.push({ line: start, fields });
    fields = [];
    cur = '';
    fieldStarted = false;
  };
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cur += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        cur += ch;
      }
      continue;
    }
    if (ch === '"' && !fieldStarted) {
      quoted = true;
      fieldStarted = true;
    } else if (ch === ',') {
      fields.push(cur);
      cur = '';
      fieldStarted = false;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      start = line;
    } else {
      cur += ch;
      fieldStarted = true;
    }
  }
  if (quoted) throw new RpvError(`rate: ${file} line ${start}: quoted field not closed before the end of the file`);
  if (cur !== '' || fields.length > 0) endRecord();
  return records;
}

/** Read a ratings CSV; every row is checked, and the first bad one is an error naming its line. */
export async function readRatingsCsv(file: string): Promise<RatingRow[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`rate: cannot read ${file}: ${errorMessage(err)}`);
  }
  const records = parseCsv(text, file);
  if (records.length === 0) throw new RpvError(`rate: ${file}: empty file; expected a header ${RATINGS_CSV_COLUMNS.join(',')}`);
  const header = records[0]!.fields.map((h) => h.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  for (const required of ['rater', 'item', 'metric', 'score']) {
    if (col(required) < 0) throw new RpvError(`rate: ${file} line 1: no '${required}' column; the header needs rater,item,metric,score (found ${header.join(',')})`);
  }
  const rows: RatingRow[] = [];
  for (const { line, fields } of records.slice(1)) {
    if (fields.length !== header.length) throw new RpvError(`rate: ${file} line ${line}: ${fields.length} fields, the header has ${header.length}`);
    const get = (name: string) => (col(name) < 0 ? '' : unescapeCsvFormula(fields[col(name)]!.trim()));
    for (const name of ['rater', 'item', 'metric', 'score']) if (get(name) === '') throw new RpvError(`rate: ${file} line ${line}: empty ${name}`);
    const raw = get('score');
    const number = Number(raw);
    let kind = get('kind') as RatingKind | '';
    if (kind === '') kind = Number.isFinite(number) ? 'score' : 'pairwise';
    if (kind !== 'score' && kind !== 'pairwise') throw new RpvError(`rate: ${file} line ${line}: kind: expected score or pairwise, found '${kind}'`);
    if (kind === 'score' && !Number.isFinite(number)) throw new RpvError(`rate: ${file} line ${line}: score: expected a number, found '${raw}'`);
    rows.push({ rater: get('rater'), item: get('item'), metric: get('metric'), score: kind === 'score' ? number : raw, system: get('system'), time: get('time'), kind, line });
  }
  return rows;
}
