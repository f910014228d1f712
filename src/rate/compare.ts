import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { readReviewFile, reviewMetricNames, reviewScores } from '../eval/reviews.js';
import { RpvError, errorMessage } from '../util/errors.js';
import { correlate } from './correlation.js';
import type { RatingRow } from './csv.js';

/**
 * The LLM judge against the humans. For every metric, each (item, system) that both rated gives a
 * pair: the judge's score and the mean of the human scores; Spearman's rho and Kendall's tau-b
 * are computed over those pairs, and each system's mean from both sides is set side by side (over
 * the same items). Pairwise human ratings are compared with the judge's preference (the system it
 * scored higher on the item): the share of pairs where it picks what most raters picked.
 *
 * The judge's side is an `rpv eval` report folder (its `reviews.json`, scores parsed from the review
 * texts), one per system: `--judge <system>=<folder>`, or the folder alone, named after the answers
 * it judged (`report.json`'s `answers`, else `<folder>/answers.json`), the name `rpv rate serve`
 * gives the same answers file.
 */

export type JudgeScoreKind = 'evaluated' | 'ratio';

export interface JudgeSource {
  folder: string;
  system?: string;
}

export interface JudgeScores {
  system: string;
  folder: string;
  /** `<item>\0<metric>` -> the judge's evaluated-answer score (1–10, mean of the orders) and a/b ratio. */
  scores: Map<string, { evaluated: number; ratio: number }>;
  metrics: string[];
  /** Reviews that did not parse (left out). */
  failures: number;
}

export interface SystemMeans {
  /** Items of this system both sides rated on the metric. */
  items: number;
  human: number | null;
  judge: number | null;
}

export interface MetricComparison {
  /** (item, system) pairs rated by both. */
  n: number;
  spearman: number | null;
  kendallTauB: number | null;
  systems: Record<string, SystemMeans>;
  /** Pairwise human ratings against the judge's preference, when there are any. */
  pairwise?: { pairs: number; agree: number; rate: number | null; humanTies: number };
}

export interface Comparison {
  judgeScore: JudgeScoreKind;
  metrics: Record<string, MetricComparison>;
  notes: string[];
}

/** `name=runs/eval` -> { system: 'name', folder }. */
export function parseJudgeSource(spec: string): JudgeSource {
  const eq = spec.indexOf('=');
  if (eq > 0 && !/[\\/]/.test(spec.slice(0, eq))) return { system: spec.slice(0, eq), folder: spec.slice(eq + 1) };
  return { folder: spec };
}

/** Read one `rpv eval` report folder's per-item judge scores. */
export async function readJudgeScores(source: JudgeSource): Promise<JudgeScores> {
  const reviewsFile = path.join(source.folder, 'reviews.json');
  if (!existsSync(reviewsFile)) throw new RpvError(`rate: ${source.folder}: no reviews.json: expected an \`rpv eval\` report folder`);
  let system = source.system;
  if (system === undefined) {
    let answers: unknown;
    try {
      answers = JSON.parse(await fs.readFile(path.join(source.folder, 'report.json'), 'utf8')).answers;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RpvError(`rate: ${source.folder}/report.json: ${errorMessage(err)}`);
    }
    system = path.normalize(typeof answers === 'string' ? answers : existsSync(path.join(source.folder, 'answers.json')) ? path.join(source.folder, 'answers.json') : source.folder);
  }
  const items = await readReviewFile(reviewsFile);
  const metrics = reviewMetricNames(items);
  const { scores, failures } = reviewScores(items, metrics);
  const map = new Map<string, { evaluated: number; ratio: number }>();
  for (const s of scores) {
    const orders = [s.forward, s.swapped].filter((o) => o !== undefined);
    map.set(`${s.id}\u0000${s.metric}`, { evaluated: orders.reduce((a, o) => a + o.evaluated, 0) / orders.length, ratio: s.score });
  }
  return { system, folder: source.folder, scores: map, metrics, failures: failures.length };
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length);

/** Compare human ratings with one or more judge reports. */
export function compareJudgeWithHumans(rows: readonly RatingRow[], judges: readonly JudgeScores[], options: { judgeScore?: JudgeScoreKind } = {}): Comparison {
  const { judgeScore = 'evaluated' } = options;
  const notes: string[] = [];
  const bySystem = new Map(judges.map((j) => [j.system, j]));
  if (bySystem.size !== judges.length) throw new RpvError('rate: two --judge reports have the same system name; name them with --judge <system>=<folder>');
  const scoreRows = rows.filter((r) => r.kind === 'score');
  // Ratings without a system column go with the judge when there is one judge report.
  const systemOf = (r: RatingRow) => (r.system === '' && judges.length === 1 ? judges[0]!.system : r.system);
  const humanSystems = new Set(scoreRows.map(systemOf));
  const pairRows = rows.filter((r) => r.kind === 'pairwise');
  const pairSystems = new Set(pairRows.flatMap((r) => r.system.split(' vs ')));
  if (![...bySystem.keys()].some((s) => humanSystems.has(s) || pairSystems.has(s))) {
    throw new RpvError(
      `rate: none of the judged systems (${[...bySystem.keys()].join(', ')}) is in the human ratings (systems: ${[...humanSystems, ...pairSystems].join(', ') || 'none'}); name them with --judge <system>=<folder>`,
    );
  }
  const value = (j: JudgeScores, item: string, metric: string) => j.scores.get(`${item}\u0000${metric}`)?.[judgeScore];

  const metrics = [...new Set(rows.map((r) => r.metric))];
  const out: Record<string, MetricComparison> = {};
  for (const metric of metrics) {
    // Mean human score per (item, system).
    const human = new Map<string, { item: string; system: string; scores: number[] }>();
    for (const r of scoreRows) {
      if (r.metric !== metric) continue;
      const system = systemOf(r);
      const key = `${r.item}\u0000${system}`;
      if (!human.has(key)) human.set(key, { item: r.item, system, scores: [] });
      human.get(key)!.scores.push(r.score as number);
    }
    const xs: number[] = [];
    const ys: number[] = [];
    const perSystem = new Map<string, { human: number[]; judge: number[] }>();
    for (const { item, system, scores } of human.values()) {
      const j = bySystem.get(system);
      const judged = j ? value(j, item, metric) : undefined;
      if (judged === undefined) continue;
      const h = mean(scores)!;
      xs.push(judged);
      ys.push(h);
      if (!perSystem.has(system)) perSystem.set(system, { human: [], judge: [] });
      perSystem.get(system)!.human.push(h);
      perSystem.get(system)!.judge.push(judged);
    }
    const { spearman, kendallTauB } = correlate(xs, ys);
    const systems: Record<string, SystemMeans> = {};
    for (const [system, v] of [...perSystem.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) systems[system] = { items: v.human.length, human: mean(v.human), judge: mean(v.judge) };
    const comparison: MetricComparison = { n: xs.length, spearman, kendallTauB, systems };

    const pairs = new Map<string, { item: string; pair: string; choices: string[] }>();
    for (const r of pairRows) {
      if (r.metric !== metric) continue;
      const key = `${r.item}\u0000${r.system}`;
      if (!pairs.has(key)) pairs.set(key, { item: r.item, pair: r.system, choices: [] });
      pairs.get(key)!.choices.push(String(r.score));
    }
    if (pairs.size > 0) {
      let compared = 0;
      let agree = 0;
      let humanTies = 0;
      for (const { item, pair, choices } of pairs.values()) {
        const [a, b] = pair.split(' vs ');
        const ja = bySystem.get(a!);
        const jb = bySystem.get(b!);
        const sa = ja ? value(ja, item, metric) : undefined;
        const sb = jb ? value(jb, item, metric) : undefined;
        if (sa === undefined || sb === undefined) continue;
        const majority = majorityChoice(choices);
        if (majority === 'tie') humanTies++;
        compared++;
        const judgePick = sa > sb ? a : sb > sa ? b : 'tie';
        if (judgePick === majority) agree++;
      }
      comparison.pairwise = { pairs: compared, agree, rate: compared === 0 ? null : agree / compared, humanTies };
    }
    out[metric] = comparison;
  }
  for (const j of judges) {
    if (j.failures > 0) notes.push(`${j.folder}: ${j.failures} unparseable judge reviews left out`);
    if (!humanSystems.has(j.system) && !pairSystems.has(j.system)) notes.push(`${j.folder}: system '${j.system}' has no human ratings`);
  }
  for (const s of humanSystems) if (!bySystem.has(s)) notes.push(`system '${s}' has human ratings but no --judge report`);
  return { judgeScore, metrics: out, notes };
}

/** The most frequent choice; a draw between choices counts as `tie`. */
function majorityChoice(choices: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const c of choices) counts.set(c, (counts.get(c) ?? 0) + 1);
  const sorted = [...counts.entries()].sort((x, y) => y[1] - x[1]);
  return sorted.length > 1 && sorted[0]![1] === sorted[1]![1] ? 'tie' : sorted[0]![0];
}

/** The comparison as aligned text. */
export function formatComparison(c: Comparison): string {
  const names = Object.keys(c.metrics);
  const width = Math.max(6, ...names.map((n) => n.length));
  const f = (x: number | null | undefined, d = 3) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const lines = [`judge score: ${c.judgeScore === 'evaluated' ? "the judge's 1-10 score of the answer" : 'a / b (answer over ground truth)'}; human: mean score per item`];
  lines.push(`${'metric'.padEnd(width)}  pairs  spearman  kendall-b  pairwise agree`);
  for (const name of names) {
    const m = c.metrics[name]!;
    const pw = m.pairwise ? `${m.pairwise.agree}/${m.pairwise.pairs}` : '-';
    lines.push(`${name.padEnd(width)}  ${String(m.n).padStart(5)}  ${f(m.spearman).padStart(8)}  ${f(m.kendallTauB).padStart(9)}  ${pw.padStart(14)}`);
  }
  const systems = [...new Set(names.flatMap((n) => Object.keys(c.metrics[n]!.systems)))];
  if (systems.length > 0) {
    lines.push('', 'per-system means over the items both rated (human | judge):');
    const sw = Math.max(...systems.map((s) => s.length), 6);
    lines.push(`${'metric'.padEnd(width)}  ${systems.map((s) => s.padStart(Math.max(sw, 15))).join('  ')}`);
    for (const name of names) {
      const cells = systems.map((s) => {
        const m = c.metrics[name]!.systems[s];
        return (m ? `${f(m.human, 2)} | ${f(m.judge, 2)}` : '-').padStart(Math.max(sw, 15));
      });
      lines.push(`${name.padEnd(width)}  ${cells.join('  ')}`);
    }
  }
  for (const n of c.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}
