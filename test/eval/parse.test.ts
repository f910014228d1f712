import { describe, expect, it } from 'vitest';
import { parseJudgeScores, scoreReview } from '../../src/eval/index.js';

// Spellings of the scores line seen from real judges (GPT-4, Qwen, Claude, local models).
const ACCEPTED: [string, number, number][] = [
  ['Model A stays in character better. [Scores]: (8, 6)', 8, 6],
  ['Both adhere. [Scores]:(10,10)', 10, 10],
  ['Both adhere.\n\n[Scores] :  ( 7 ,  9 )  ', 7, 9],
  ['Scores: 8, 9', 8, 9],
  ['[Score]: (3, 4)', 3, 4],
  ['**[Scores]**: (7.5, 9)', 7.5, 9],
  ['Evaluation done.\n**Scores:** [6, 8]', 6, 8],
  ['[[Scores]]: {5, 6}', 5, 6],
  ['Model B is better.\n[Scores]:\n(4, 5)', 4, 5],
  ['评价：B 更贴近角色。[Scores]：（８，９）', 8, 9],
  ['【分数】：(8、9)', 8, 9],
  ['评分: (6，7)', 6, 7],
  ['[Scores]: (Model A: 8, Model B: 9)', 8, 9],
  ['[Scores]: (A=8, B=9)', 8, 9],
  ['[Scores]: (8/10, 9/10)', 8, 9],
  ['[Scores]: (8 and 9)', 8, 9],
  ['Model A is close to Model B in tone (6, 7).', 6, 7],
  // A judge that echoes the template before answering: the last pair counts.
  ['Format: [Scores]: ({the score of Model A}, {the score of Model B}). [Scores]: (3, 4)', 3, 4],
  ['First thought [Scores]: (5, 5). On reflection, [Scores]: (6, 8)', 6, 8],
];

describe('parseJudgeScores', () => {
  it.each(ACCEPTED)('reads %j', (text, a, b) => {
    const parsed = parseJudgeScores(text);
    expect(parsed).toMatchObject({ ok: true, a, b });
  });

  it('rejects reviews without a score pair, saying why', () => {
    expect(parseJudgeScores('Model A scores well, and Model B too.')).toEqual({ ok: false, reason: 'no [Scores]: (a, b) pair found' });
    expect(parseJudgeScores('   ')).toEqual({ ok: false, reason: 'empty review' });
    expect(parseJudgeScores('[Scores]: ({the score of Model A}, {the score of Model B})')).toEqual({
      ok: false,
      reason: 'no [Scores]: (a, b) pair found',
    });
  });

  it('rejects scores off the 1-10 scale instead of guessing', () => {
    expect(parseJudgeScores('[Scores]: (11, 9)')).toEqual({ ok: false, reason: "scores out of range 0-10: '[Scores]: (11, 9)'" });
  });
});

describe('scoreReview', () => {
  it('maps the pair to evaluated / ground truth by order', () => {
    expect(scoreReview('[Scores]: (6, 8)', 'forward')).toEqual({ ok: true, score: { evaluated: 6, groundTruth: 8, ratio: 0.75 } });
    expect(scoreReview('[Scores]: (8, 6)', 'swapped')).toEqual({ ok: true, score: { evaluated: 6, groundTruth: 8, ratio: 0.75 } });
  });

  it('refuses a ground truth scored 0 (the ratio is undefined)', () => {
    expect(scoreReview('[Scores]: (5, 0)', 'forward')).toEqual({
      ok: false,
      reason: "the ground truth scored 0, so the ratio is undefined: '[Scores]: (5, 0)'",
    });
  });
});
