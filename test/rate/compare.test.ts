import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { compareJudgeWithHumans, writeEvalReport } from '../../src/index.js';
import { readJudgeScores, type RatingRow } from '../../src/rate/index.js';
import { summarizeScores, type ReviewFileItem } from '../../src/eval/index.js';
import { repoRoot, tempDir } from './fixtures.js';

const run = promisify(execFile);
const METRICS = ['Tone Consistency', 'Human Likeness'];

/** An `rpv eval` report folder whose judge gave the evaluated answer of item qi `scores[i]` (ground truth 10). */
async function judgeFolder(dir: string, scores: readonly number[], options: { answers?: string; swapped?: readonly number[] } = {}): Promise<string> {
  const reviews: ReviewFileItem[] = scores.map((a, i) => {
    const rm = (x: number, first: boolean) => Object.fromEntries(METRICS.map((m) => [m, { review: `Fine. [Scores]: (${first ? x : 10}, ${first ? 10 : x})`, score: {} }]));
    return { id: `q${i + 1}`, rm_review: rm(a, true), ...(options.swapped ? { rm_review_swapped: rm(options.swapped[i]!, false) } : {}) };
  });
  const summary = summarizeScores({ metricSet: 'video2roleplay', metrics: METRICS, sampleIds: [], scores: [] });
  await writeEvalReport(dir, { summary, ...(options.answers ? { answers: options.answers } : {}) }, reviews);
  return dir;
}

const row = (rater: string, item: string, metric: string, score: number | string, system: string, kind: RatingRow['kind'] = 'score'): RatingRow => ({ rater, item, metric, score, system, time: '', kind });

describe('rpv rate compare', () => {
  it('correlates the judge with the mean human score per item (checked by hand)', async () => {
    const dir = await tempDir('compare');
    const judge = await readJudgeScores({ system: 'base', folder: await judgeFolder(path.join(dir, 'base'), [3, 5, 7, 8, 9]) });
    // Human means per item: 2, 4, 4, 9, 10 (two raters each).
    const humans: [number, number][] = [[1, 3], [4, 4], [3, 5], [9, 9], [10, 10]];
    const rows = humans.flatMap(([x, y], i) => [row('r1', `q${i + 1}`, 'Tone Consistency', x, 'base'), row('r2', `q${i + 1}`, 'Tone Consistency', y, 'base')]);
    const c = compareJudgeWithHumans(rows, [judge]);
    const tone = c.metrics['Tone Consistency']!;
    // Ranks: judge 1..5, humans 1, 2.5, 2.5, 4, 5: rho = 9.5 / sqrt(10 * 9.5).
    expect(tone.spearman).toBeCloseTo(9.5 / Math.sqrt(95), 12);
    // 10 pairs, one tied in the humans, the other 9 concordant: tau-b = 9 / sqrt(10 * 9).
    expect(tone.kendallTauB).toBeCloseTo(9 / Math.sqrt(90), 12);
    expect(tone.n).toBe(5);
    expect(tone.systems).toEqual({ base: { items: 5, human: 29 / 5, judge: 32 / 5 } });
    expect(c.notes).toEqual([]);
    // The a / b ratio ranks the same here (b is always 10).
    expect(compareJudgeWithHumans(rows, [judge], { judgeScore: 'ratio' }).metrics['Tone Consistency']!.systems.base!.judge).toBeCloseTo(0.64, 12);
  });

  it("sets systems' means side by side and checks pairwise choices against the judge's preference", async () => {
    const dir = await tempDir('compare2');
    const base = await readJudgeScores({ folder: await judgeFolder(path.join(dir, 'base'), [4, 6, 8], { answers: 'runs/base/answers.json' }) });
    expect(base.system).toBe(path.normalize('runs/base/answers.json'));
    // Swapped order too: the evaluated score is the mean of both orders.
    const lora = await readJudgeScores({ system: 'lora', folder: await judgeFolder(path.join(dir, 'lora'), [6, 6, 9], { swapped: [8, 4, 9] }) });
    expect(lora.scores.get('q1\u0000Tone Consistency')).toEqual({ evaluated: 7, ratio: 0.7 });
    const b = base.system;
    const pair = `${b} vs lora`;
    const rows: RatingRow[] = [
      row('r1', 'q1', 'Tone Consistency', 5, b),
      row('r1', 'q1', 'Tone Consistency', 8, 'lora'),
      row('r1', 'q2', 'Tone Consistency', 6, b),
      row('r1', 'q2', 'Tone Consistency', 5, 'lora'),
      // Pairwise: q1 raters prefer lora (judge: lora 7 > base 4: agree); q2 a draw between choices
      // counts as tie (judge: 5 < 6: disagree); q3 base (judge: lora 9 > 8: disagree).
      row('r1', 'q1', 'Human Likeness', 'lora', pair, 'pairwise'),
      row('r2', 'q1', 'Human Likeness', 'lora', pair, 'pairwise'),
      row('r1', 'q2', 'Human Likeness', 'lora', pair, 'pairwise'),
      row('r2', 'q2', 'Human Likeness', b, pair, 'pairwise'),
      row('r1', 'q3', 'Human Likeness', b, pair, 'pairwise'),
      row('r1', 'q9', 'Tone Consistency', 5, 'other'),
    ];
    const c = compareJudgeWithHumans(rows, [base, lora]);
    expect(c.metrics['Tone Consistency']!.systems).toEqual({ [b]: { items: 2, human: 5.5, judge: 5 }, lora: { items: 2, human: 6.5, judge: 6 } });
    expect(c.metrics['Human Likeness']!.pairwise).toEqual({ pairs: 3, agree: 1, rate: 1 / 3, humanTies: 1 });
    expect(c.notes).toEqual(["system 'other' has human ratings but no --judge report"]);
    expect(() => compareJudgeWithHumans([row('r1', 'q1', 'Tone Consistency', 5, 'zzz')], [base])).toThrow(
      `rate: none of the judged systems (${b}) is in the human ratings (systems: zzz); name them with --judge <system>=<folder>`,
    );
  });

  it('runs from the command line', async () => {
    const dir = await tempDir('compare-cli');
    const folder = await judgeFolder(path.join(dir, 'eval'), [2, 9, 5]);
    const csv = path.join(dir, 'ratings.csv');
    await fs.writeFile(csv, 'rater,item,metric,score,system\na,q1,Tone Consistency,3,mine\na,q2,Tone Consistency,8,mine\na,q3,Tone Consistency,6,mine\n');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), 'rate', 'compare', '--human', csv, '--judge', `mine=${folder}`, '--json'], { cwd: repoRoot });
    const out = JSON.parse(stdout) as { judgeScore: string; metrics: Record<string, { n: number; spearman: number; kendallTauB: number }> };
    expect(out.judgeScore).toBe('evaluated');
    expect(out.metrics['Tone Consistency']).toMatchObject({ n: 3, spearman: 1, kendallTauB: 1 });
  }, 60_000);
});
