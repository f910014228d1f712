import path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import type { EvalSummary } from './aggregate.js';
import type { ReviewFileItem } from './reviews.js';

/**
 * The evaluation report, written atomically into one folder:
 *
 * - `report.json`: everything: judge, counts, per-metric and overall means, each failure with its
 *   reason, perplexity when computed.
 * - `report.csv`: one row per metric plus `overall`: count, failed, mean (a / b), the mean raw
 *   scores of the evaluated answer and the ground truth, and with `--swap` each order's mean.
 * - `results.csv`: MMRole-Eval's layout (`count` then one column per metric, numbers printed as
 *   Python prints floats), to set beside the published tables.
 * - `reviews.json`: the samples with every raw review, in MMRole's review-file layout, which
 *   `rpv eval --from-reviews` re-aggregates.
 */
export interface EvalReport {
  summary: EvalSummary;
  /** Anything else to record: judge endpoint and model, run counts, client stats, perplexity. */
  [key: string]: unknown;
}

/** A float as Python's `repr` prints it (`1.0`, `0.9986111111111112`), as MMRole's CSVs hold them. */
export function formatPythonFloat(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return x.toFixed(1);
  const s = String(x);
  // JS writes 1e-7 / 1e+21; Python writes 1e-07 / 1e+21.
  return s.replace(/e([+-])(\d)$/, 'e$10$2');
}

function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

const num = (x: number | null | undefined): string => (x === null || x === undefined ? '' : formatPythonFloat(x));

/** MMRole's results layout: header `count,<metrics>`, one row; CRLF line ends like Python's csv module. */
export function formatResultsCsv(summary: EvalSummary): string {
  const header = ['count', ...summary.metrics.map((m) => m.metric)];
  const row = [String(summary.reviewed), ...summary.metrics.map((m) => num(m.mean))];
  return `${header.map(csvField).join(',')}\r\n${row.join(',')}\r\n`;
}

/** One row per metric and an `overall` row. */
export function formatReportCsv(summary: EvalSummary): string {
  const swapped = summary.metrics.some((m) => m.meanSwapped !== undefined);
  const header = ['metric', 'count', 'failed', 'mean', 'mean_evaluated', 'mean_ground_truth', ...(swapped ? ['mean_forward', 'mean_swapped'] : [])];
  const lines = [header.join(',')];
  for (const m of summary.metrics) {
    const row = [csvField(m.metric), String(m.count), String(m.failed), num(m.mean), num(m.meanEvaluated), num(m.meanGroundTruth)];
    if (swapped) row.push(num(m.meanForward), num(m.meanSwapped));
    lines.push(row.join(','));
  }
  const failed = summary.metrics.reduce((n, m) => n + m.failed, 0);
  lines.push(['overall', String(summary.reviewed), String(failed), num(summary.overall.mean), '', '', ...(swapped ? ['', ''] : [])].join(','));
  return `${lines.join('\n')}\n`;
}

/** Write report.json, report.csv, results.csv and (when given) reviews.json into `dir`. */
export async function writeEvalReport(dir: string, report: EvalReport, reviews?: readonly ReviewFileItem[]): Promise<string[]> {
  const files: [string, string][] = [
    ['report.json', `${JSON.stringify(report, null, 2)}\n`],
    ['report.csv', formatReportCsv(report.summary)],
    ['results.csv', formatResultsCsv(report.summary)],
  ];
  if (reviews) files.push(['reviews.json', `${JSON.stringify(reviews, null, 4)}\n`]);
  const written: string[] = [];
  for (const [name, text] of files) {
    const file = path.join(dir, name);
    await writeFileAtomic(file, text);
    written.push(file);
  }
  return written;
}

/** The summary as aligned text for a terminal. */
export function formatSummaryTable(summary: EvalSummary): string {
  const width = Math.max(7, ...summary.metrics.map((m) => m.metric.length));
  const f = (x: number | null) => (x === null ? '-' : x.toFixed(4));
  const lines = [`${'metric'.padEnd(width)}  ${'count'.padStart(6)}  ${'failed'.padStart(6)}  ${'mean a/b'.padStart(9)}`];
  for (const m of summary.metrics) {
    lines.push(`${m.metric.padEnd(width)}  ${String(m.count).padStart(6)}  ${String(m.failed).padStart(6)}  ${f(m.mean).padStart(9)}`);
  }
  lines.push(`${'overall'.padEnd(width)}  ${String(summary.reviewed).padStart(6)}  ${''.padStart(6)}  ${f(summary.overall.mean).padStart(9)}`);
  return lines.join('\n');
}
