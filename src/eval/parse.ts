/**
 * Parse the score pair at the end of a judge's review. The protocol asks for
 * `{Qualitative Evaluation}, [Scores]: ({score of Model A}, {score of Model B})` on a 1–10 scale;
 * real judges write it in many ways, all accepted here:
 *
 * - `[Scores]: (8, 9)`, `[Scores]:(8,9)`, `[Scores] : ( 8 , 9 )`, `Scores: 8, 9`, `[Score]: (8, 9)`
 * - brackets `[8, 9]`, `{8, 9}`, markdown `**[Scores]**: (8, 9)`, the pair on the next line
 * - full-width punctuation and digits `[Scores]：（８，９）`, `【分数】：(8、9)`
 * - labelled numbers `(Model A: 8, Model B: 9)`, `(A=8, B=9)`, out-of-ten `(8/10, 9/10)`
 * - decimals `(8.5, 9)`
 * - a bare `(8, 9)` closing the review when the label is missing
 *
 * When a review holds several score pairs (a judge that echoes the template, or corrects itself),
 * the last one counts. A pair outside 0–10 is rejected with a reason rather than guessed.
 */

export type ScoreParse =
  | { ok: true; a: number; b: number; /** The text that matched, for reports. */ matched: string }
  | { ok: false; reason: string };

/** Highest score on the judge's scale. */
export const MAX_SCORE = 10;

const NUM = String.raw`(\d+(?:\.\d+)?)(?:\s*/\s*10(?:\.0+)?)?`;
// `Model A: 8`, `A = 8`, `Response B - 9`, `模型A：8`
const PREFIX = String.raw`(?:(?:model|response|assistant|模型|回答)?\s*[ab]\s*[:=\-]\s*)?`;
const SEP = String.raw`\s*(?:,|;|\band\b|\s)\s*`;
const PAIR = String.raw`[(\[{<]?\s*${PREFIX}${NUM}${SEP}${PREFIX}${NUM}\s*[)\]}>]?`;
const LABEL = String.raw`\[*\s*(?:scores?|分数|评分|得分)\s*\]*`;

const LABELLED = new RegExp(String.raw`${LABEL}\s*[:=]?\s*${PAIR}`, 'giu');
const TRAILING = new RegExp(String.raw`[(\[]\s*${PREFIX}${NUM}\s*,\s*${PREFIX}${NUM}\s*[)\]]\s*[.。]?\s*$`, 'iu');

/** Fold the spellings real judges use into one: full-width forms, CJK brackets, markdown. */
export function normalizeReviewText(text: string): string {
  return text
    .normalize('NFKC')
    .replace(/[【〔［]/g, '[')
    .replace(/[】〕］]/g, ']')
    .replace(/、/g, ',')
    .replace(/[*_`]/g, '');
}

/** The score pair `(a, b)` of one review: a for Model A (shown first), b for Model B. */
export function parseJudgeScores(text: string): ScoreParse {
  if (typeof text !== 'string' || text.trim() === '') return { ok: false, reason: 'empty review' };
  const normalized = normalizeReviewText(text);
  let last: RegExpExecArray | null = null;
  for (const m of normalized.matchAll(LABELLED)) last = m;
  if (!last) last = TRAILING.exec(normalized);
  if (!last) return { ok: false, reason: 'no [Scores]: (a, b) pair found' };
  const a = Number(last[1]);
  const b = Number(last[2]);
  const matched = last[0].trim();
  if (!Number.isFinite(a) || !Number.isFinite(b) || a < 0 || b < 0 || a > MAX_SCORE || b > MAX_SCORE) {
    return { ok: false, reason: `scores out of range 0-${MAX_SCORE}: '${matched}'` };
  }
  return { ok: true, a, b, matched };
}
