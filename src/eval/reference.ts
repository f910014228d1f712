import { RpvError } from '../util/errors.js';
import type { EvalSample } from './samples.js';

/**
 * Judge-free reference scores: each answer against its ground truth, no model in the loop.
 *
 * - `rouge`: ROUGE-L F1, RoleBench's main metric, as Google's `rouge-score` computes `rougeL`
 *   (`RougeScorer(['rougeL'], use_stemmer=False)`): lowercase, every run of characters other than
 *   `a-z0-9` becomes a space, whitespace-separated tokens, F1 of the longest common subsequence
 *   (0 when either side has no token). rouge-score's tokenizer drops Chinese entirely, so Han
 *   characters are kept and each is one token (Chinese scored per character, as RoleBench does).
 *   A sample's score is its F1; a group's score is the mean over its samples.
 * - `bleu`: corpus BLEU-4 as sacrebleu's `corpus_bleu` computes it with its defaults
 *   (`smooth_method='exp'`, uniform weights, one reference, brevity penalty over the whole
 *   group) on the same tokens as ROUGE (sacrebleu's `tokenize='none'` on them joined by spaces),
 *   on sacrebleu's 0–100 scale.
 *
 * A missing or empty answer scores 0 on both and is counted as `empty`.
 */

export type ReferenceMetric = 'rouge' | 'bleu';
export const REFERENCE_METRICS: readonly ReferenceMetric[] = ['rouge', 'bleu'];

/** BLEU's n-gram orders: BLEU-4. */
const MAX_ORDER = 4;

const HAN = /\p{Script=Han}/gu;

/** Tokens for ROUGE and BLEU: rouge-score's default tokenizer, plus one token per Han character. */
export function referenceTokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(HAN, ' $& ')
    .replace(/[^a-z0-9\p{Script=Han}]+/gu, ' ')
    .split(' ')
    .filter((t) => t !== '');
}

/** Length of the longest common subsequence of two token lists (dynamic programming, two rows). */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Array<number>(b.length + 1).fill(0);
  let row = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      row[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, row[j - 1]!);
    }
    [prev, row] = [row, prev];
  }
  return prev[b.length]!;
}

/** ROUGE-L of one prediction against one reference (rouge-score's `_score_lcs`). */
export function rougeL(reference: string, prediction: string): { precision: number; recall: number; f1: number } {
  const target = referenceTokens(reference);
  const predicted = referenceTokens(prediction);
  if (target.length === 0 || predicted.length === 0) return { precision: 0, recall: 0, f1: 0 };
  const lcs = lcsLength(target, predicted);
  const precision = lcs / predicted.length;
  const recall = lcs / target.length;
  const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1 };
}

/** BLEU's sufficient statistics of one segment: lengths, matched and total n-grams per order. */
export interface BleuStats {
  hypothesisLength: number;
  referenceLength: number;
  correct: number[];
  total: number[];
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join('\u0000');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** One segment's statistics: each hypothesis n-gram matches at most as often as the reference has it. */
export function bleuStats(reference: string, hypothesis: string): BleuStats {
  const ref = referenceTokens(reference);
  const hyp = referenceTokens(hypothesis);
  const correct: number[] = [];
  const total: number[] = [];
  for (let n = 1; n <= MAX_ORDER; n++) {
    const refCounts = ngramCounts(ref, n);
    let matched = 0;
    let all = 0;
    for (const [gram, count] of ngramCounts(hyp, n)) {
      all += count;
      matched += Math.min(count, refCounts.get(gram) ?? 0);
    }
    correct.push(matched);
    total.push(all);
  }
  return { hypothesisLength: hyp.length, referenceLength: ref.length, correct, total };
}

/** Corpus BLEU-4 (0–100) from summed statistics, with sacrebleu's `exp` smoothing. */
export function bleuFromStats(stats: readonly BleuStats[]): number {
  let sysLen = 0;
  let refLen = 0;
  const correct = new Array<number>(MAX_ORDER).fill(0);
  const total = new Array<number>(MAX_ORDER).fill(0);
  for (const s of stats) {
    sysLen += s.hypothesisLength;
    refLen += s.referenceLength;
    for (let n = 0; n < MAX_ORDER; n++) {
      correct[n]! += s.correct[n]!;
      total[n]! += s.total[n]!;
    }
  }
  if (!correct.some((c) => c > 0)) return 0;
  const brevity = sysLen < refLen ? Math.exp(1 - refLen / sysLen) : 1;
  // An order the hypotheses have no n-gram of keeps precision 0: the score is then 0.
  const precisions = new Array<number>(MAX_ORDER).fill(0);
  let smooth = 1;
  for (let n = 0; n < MAX_ORDER; n++) {
    if (total[n] === 0) break;
    if (correct[n] === 0) {
      smooth *= 2;
      precisions[n] = 100 / (smooth * total[n]!);
    } else precisions[n] = (100 * correct[n]!) / total[n]!;
  }
  if (precisions.some((p) => p === 0)) return 0;
  return brevity * Math.exp(precisions.reduce((sum, p) => sum + Math.log(p), 0) / MAX_ORDER);
}

/** Corpus BLEU-4 of hypotheses against their references (one each, same order). */
export function corpusBleu(references: readonly string[], hypotheses: readonly string[]): number {
  if (references.length !== hypotheses.length) {
    throw new RpvError(`bleu: ${hypotheses.length} hypotheses for ${references.length} references`);
  }
  return bleuFromStats(references.map((r, i) => bleuStats(r, hypotheses[i]!)));
}

/** The reference scores of one group of samples (a role, or all). */
export interface ReferenceGroupScores {
  samples: number;
  /** Samples whose answer is missing or empty (scored 0). */
  empty: number;
  /** Mean ROUGE-L F1 over the samples (0–1); absent when not asked for. */
  rougeL?: number;
  /** Corpus BLEU-4 over the samples (0–100); absent when not asked for. */
  bleu?: number;
}

export interface ReferenceScores {
  metrics: ReferenceMetric[];
  overall: ReferenceGroupScores;
  /** Per role, in order of first appearance. */
  roles: Record<string, ReferenceGroupScores>;
  /** Per sample: ROUGE-L F1 (when asked for) and whether the answer was empty. */
  perSample: { id: string; role: string; rougeL?: number; empty: boolean }[];
}

function groupScores(samples: readonly EvalSample[], metrics: readonly ReferenceMetric[], f1: Map<EvalSample, number>): ReferenceGroupScores {
  const out: ReferenceGroupScores = { samples: samples.length, empty: samples.filter((s) => s.answer === null).length };
  if (metrics.includes('rouge')) {
    let sum = 0;
    for (const s of samples) sum += f1.get(s)!;
    out.rougeL = samples.length > 0 ? sum / samples.length : 0;
  }
  if (metrics.includes('bleu')) out.bleu = corpusBleu(samples.map((s) => s.reference), samples.map((s) => s.answer ?? ''));
  return out;
}

/** ROUGE-L and/or BLEU of every sample's answer against its reference, per role and overall. */
export function scoreReferences(samples: readonly EvalSample[], metrics: readonly ReferenceMetric[] = REFERENCE_METRICS): ReferenceScores {
  const f1 = new Map<EvalSample, number>();
  if (metrics.includes('rouge')) for (const s of samples) f1.set(s, s.answer === null ? 0 : rougeL(s.reference, s.answer).f1);
  const byRole = new Map<string, EvalSample[]>();
  for (const s of samples) {
    const list = byRole.get(s.role) ?? [];
    list.push(s);
    byRole.set(s.role, list);
  }
  return {
    metrics: [...metrics],
    overall: groupScores(samples, metrics, f1),
    roles: Object.fromEntries([...byRole].map(([role, list]) => [role, groupScores(list, metrics, f1)])),
    perSample: samples.map((s) => ({ id: s.id, role: s.role, ...(f1.has(s) ? { rougeL: f1.get(s)! } : {}), empty: s.answer === null })),
  };
}

/** Terminal columns of a text: wide characters (Han, kana, Hangul, full-width forms) take two. */
function displayWidth(text: string): number {
  let width = 0;
  for (const c of text) width += /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\uff00-\uff60\u3000-\u303f]/u.test(c) ? 2 : 1;
  return width;
}

const padDisplay = (text: string, width: number) => text + ' '.repeat(Math.max(0, width - displayWidth(text)));

/** The scores as aligned text: one row per role, then `overall` (wide characters counted as two columns). */
export function formatReferenceTable(scores: ReferenceScores): string {
  const rows: [string, ReferenceGroupScores][] = [...Object.entries(scores.roles), ['overall', scores.overall]];
  const width = Math.max(7, ...rows.map(([name]) => displayWidth(name)));
  const rouge = scores.metrics.includes('rouge');
  const bleu = scores.metrics.includes('bleu');
  const head = [padDisplay('role', width), 'samples'.padStart(7), 'empty'.padStart(5)];
  if (rouge) head.push('ROUGE-L F1'.padStart(10));
  if (bleu) head.push('BLEU-4'.padStart(6));
  const lines = [head.join('  ')];
  for (const [name, g] of rows) {
    const cells = [padDisplay(name, width), String(g.samples).padStart(7), String(g.empty).padStart(5)];
    if (rouge) cells.push(g.rougeL!.toFixed(4).padStart(10));
    if (bleu) cells.push(g.bleu!.toFixed(2).padStart(6));
    lines.push(cells.join('  '));
  }
  return lines.join('\n');
}

/** The scores as CSV: `role,samples,empty,rouge_l_f1,bleu4`, roles then `overall`. */
export function formatReferenceCsv(scores: ReferenceScores): string {
  const rows: [string, ReferenceGroupScores][] = [...Object.entries(scores.roles), ['overall', scores.overall]];
  const field = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const lines = ['role,samples,empty,rouge_l_f1,bleu4'];
  for (const [name, g] of rows) lines.push([field(name), g.samples, g.empty, g.rougeL ?? '', g.bleu ?? ''].join(','));
  return `${lines.join('\n')}\n`;
}
