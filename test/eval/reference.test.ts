import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bleuStats, corpusBleu, lcsLength, referenceTokens, rougeL, scoreReferences, type EvalSample } from '../../src/eval/index.js';

const repo = path.resolve(import.meta.dirname, '../..');

function sample(id: string, role: string, reference: string, answer: string | null): EvalSample {
  return { id, role, script: null, otherRole: null, question: 'q', reference, answer, image: null, source: { id, role } };
}

// Each pair with its tokens and longest common subsequence written out by hand.
const english = [
  // [it is yellow unmistakably] vs [it is green unmistakably]: LCS "it is unmistakably" = 3 of 4 and 4.
  { reference: 'It is yellow, unmistakably.', answer: 'It is green, unmistakably. 🧐', lcs: 3, refLen: 4, predLen: 4 },
  // [yellow the shape moves left] vs [the shape is yellow and it moves left]: LCS "the shape moves left" = 4.
  { reference: 'Yellow! The shape moves left.', answer: 'The shape is yellow and it moves LEFT', lcs: 4, refLen: 5, predLen: 8 },
];
const chinese = [
  // [它 是 黄 色 的] vs [它 是 绿 色 的]: LCS "它是色的" = 4 of 5 and 5.
  { reference: '它是黄色的。', answer: '它是绿色的！', lcs: 4, refLen: 5, predLen: 5 },
  // [形 状 向 左 移 动] vs [它 向 左 移 动 了]: LCS "向左移动" = 4 of 6 and 6.
  { reference: '形状向左移动', answer: '它向左移动了', lcs: 4, refLen: 6, predLen: 6 },
  // [我 看 到 3 个 red 方 块] vs [i see 3 red squares]: LCS "3 red" = 2 of 8 and 5.
  { reference: '我看到3个red方块', answer: 'I see 3 red squares', lcs: 2, refLen: 8, predLen: 5 },
];
const f1 = ({ lcs, refLen, predLen }: { lcs: number; refLen: number; predLen: number }) => {
  const p = lcs / predLen;
  const r = lcs / refLen;
  return (2 * p * r) / (p + r);
};

describe('ROUGE-L (rouge-score rougeL, Chinese per character)', () => {
  it("tokenizes as rouge-score's default tokenizer, one token per Han character", () => {
    expect(referenceTokens("It's 3:05 — Café!")).toEqual(['it', 's', '3', '05', 'caf']);
    expect(referenceTokens('我看到3个red方块')).toEqual(['我', '看', '到', '3', '个', 'red', '方', '块']);
    expect(referenceTokens('，。！🧐')).toEqual([]);
  });

  it('equals the F1 of the longest common subsequence counted by hand, English and Chinese', () => {
    for (const pair of [...english, ...chinese]) {
      expect(referenceTokens(pair.reference)).toHaveLength(pair.refLen);
      expect(referenceTokens(pair.answer)).toHaveLength(pair.predLen);
      expect(lcsLength(referenceTokens(pair.reference), referenceTokens(pair.answer))).toBe(pair.lcs);
      expect(rougeL(pair.reference, pair.answer).f1).toBeCloseTo(f1(pair), 12);
    }
    expect(f1(english[1]!)).toBeCloseTo(8 / 13, 12);
    expect(f1(chinese[2]!)).toBeCloseTo(4 / 13, 12);
    expect(rougeL('anything', '')).toEqual({ precision: 0, recall: 0, f1: 0 });
  });

  it('averages per role and overall; an empty answer scores 0 and is counted', () => {
    const samples = [
      ...english.map((p, i) => sample(`en-${i}`, 'Professor Pixel', p.reference, p.answer)),
      ...chinese.map((p, i) => sample(`zh-${i}`, '像素教授', p.reference, p.answer)),
      sample('none', 'Captain Nova', 'I see it.', null),
    ];
    const scores = scoreReferences(samples, ['rouge']);
    expect(Object.keys(scores.roles)).toEqual(['Professor Pixel', '像素教授', 'Captain Nova']);
    expect(scores.roles['Professor Pixel']!.rougeL).toBeCloseTo((3 / 4 + 8 / 13) / 2, 12);
    expect(scores.roles['像素教授']!.rougeL).toBeCloseTo((4 / 5 + 2 / 3 + 4 / 13) / 3, 12);
    expect(scores.roles['Captain Nova']).toEqual({ samples: 1, empty: 1, rougeL: 0 });
    expect(scores.overall.rougeL).toBeCloseTo((3 / 4 + 8 / 13 + 4 / 5 + 2 / 3 + 4 / 13 + 0) / 6, 12);
    expect(scores.overall.empty).toBe(1);
    expect(scores.overall.bleu).toBeUndefined();
  });
});

describe('corpus BLEU-4 (sacrebleu defaults: exp smoothing, corpus brevity penalty)', () => {
  const ref = 'the cat sat on the mat';
  it('counts clipped n-grams per order', () => {
    // the cat sat on a mat: 1-grams 5/6 (one "the" matches), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3.
    expect(bleuStats(ref, 'the cat sat on a mat')).toEqual({ hypothesisLength: 6, referenceLength: 6, correct: [5, 3, 2, 1], total: [6, 5, 4, 3] });
  });
  it('is the geometric mean of the precisions times the brevity penalty', () => {
    expect(corpusBleu([ref], ['the cat sat on a mat'])).toBeCloseTo(100 * ((5 / 6) * (3 / 5) * (2 / 4) * (1 / 3)) ** 0.25, 10);
    // No 3- or 4-gram matches: exp smoothing gives 100 / (2 * 4) and 100 / (4 * 3).
    expect(corpusBleu([ref], ['the dog sat on a rug'])).toBeCloseTo((50 * 20 * 12.5 * (100 / 12)) ** 0.25, 10);
    // Corpus: the statistics are summed before the precisions.
    expect(corpusBleu([ref, ref], ['the cat sat on a mat', 'the dog sat on a rug'])).toBeCloseTo(100 * ((8 / 12) * (4 / 10) * (2 / 8) * (1 / 6)) ** 0.25, 10);
    // 4 tokens for 6: brevity penalty exp(1 - 6/4).
    expect(corpusBleu([ref], ['the cat sat on'])).toBeCloseTo(100 * Math.exp(1 - 6 / 4), 10);
    // Fewer than 4 tokens in all: no 3-gram, score 0 (as sacrebleu without effective order).
    expect(corpusBleu([ref], ['the cat'])).toBe(0);
    expect(corpusBleu([ref], [''])).toBe(0);
  });
});

describe('rpv eval without a judge', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-reference-'));
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });
  const cli = (args: string[]) =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'eval', ...args], { cwd: repo }).then(
      (r) => ({ code: 0, ...r }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  it('--metrics rouge,bleu scores answers per role and overall; an empty answer is a failure (exit 2)', async () => {
    const answers = path.join(tmp, 'answers.jsonl');
    const items = [
      { id: 'a', role: 'Professor Pixel', question: 'Colour?', reference: english[0]!.reference, answer: english[0]!.answer },
      { id: 'b', role: '像素教授', question: '颜色？', reference: chinese[0]!.reference, answer: chinese[0]!.answer },
      { id: 'c', role: '像素教授', question: '方向？', reference: chinese[1]!.reference, answer: '' },
    ];
    await fs.writeFile(answers, items.map((i) => JSON.stringify(i)).join('\n'));
    const out = path.join(tmp, 'out');
    const { code, stdout } = await cli(['--answers', answers, '--metrics', 'rouge,bleu', '--out', out]);
    expect(code).toBe(2);
    // BLEU by hand. a: it is {yellow→green} unmistakably: 3/4, 1/3, then exp smoothing 100/(2*2), 100/(4*1).
    const bleuA = (75 * (100 / 3) * 25 * 25) ** 0.25;
    // b + c (c empty): lengths 5 for 5 + 6; 1-grams 4/5, 2-grams 2/4 (它是, 色的), 3-grams 0/3, 4-grams 0/2.
    const bleuZh = Math.exp(1 - 11 / 5) * (80 * 50 * (100 / 6) * (100 / 8)) ** 0.25;
    // All three: lengths 9 for 15; 1-grams 7/9, 2-grams 3/7, 3-grams 0/5, 4-grams 0/3.
    const bleuAll = Math.exp(1 - 15 / 9) * ((700 / 9) * (300 / 7) * (100 / 10) * (100 / 12)) ** 0.25;
    expect(stdout.split('\n')).toEqual([
      'role             samples  empty  ROUGE-L F1  BLEU-4',
      `Professor Pixel        1      0      ${(0.75).toFixed(4)}   ${bleuA.toFixed(2)}`,
      // Han characters take two columns: the role column is 15 wide either way.
      `像素教授               2      1      ${((0.8 + 0) / 2).toFixed(4)}    ${bleuZh.toFixed(2)}`,
      `overall                3      1      ${((0.75 + 0.8 + 0) / 3).toFixed(4)}   ${bleuAll.toFixed(2)}`,
      '  failed: c: empty answer',
      `no judge (--base-url) given: nothing judged; wrote ${path.join(out, 'report.json')}, ${path.join(out, 'reference.csv')}`,
      '',
    ]);
    const report = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8'));
    expect(report.emptyAnswers).toEqual(['c']);
    expect(report.reference.roles['像素教授'].rougeL).toBeCloseTo(0.4, 12);
    expect(report.reference.roles['像素教授'].bleu).toBeCloseTo(bleuZh, 10);
    expect((await fs.readFile(path.join(out, 'reference.csv'), 'utf8')).split('\n')[1]).toBe(`Professor Pixel,1,0,0.75,${report.reference.roles['Professor Pixel'].bleu}`);
  });

  it('refuses an unknown metric, and a judged set without a judge', async () => {
    const answers = path.join(tmp, 'answers.jsonl');
    expect((await cli(['--answers', answers, '--metrics', 'rouge,meteor', '--out', tmp])).stderr).toBe(
      "rpv: eval: --metrics: unknown metric 'meteor'; choose from video2roleplay, mmrole, rouge, bleu\n",
    );
    expect((await cli(['--answers', answers, '--metrics', 'mmrole', '--out', tmp])).stderr).toBe(
      'rpv: eval: --metrics mmrole needs a judge: pass --base-url and --model (or --metrics rouge,bleu to score without one)\n',
    );
  });

  it('a judge nobody listens at fails at once naming the URL, without retries', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const answers = path.join(tmp, 'one.jsonl');
    await fs.writeFile(answers, JSON.stringify({ id: 'a', role: 'R', question: 'q', reference: 'yes', answer: 'yes' }));
    const { code, stderr } = await cli(['--answers', answers, '--base-url', `http://127.0.0.1:${port}/v1`, '--model', 'judge', '--out', path.join(tmp, 'nojudge')]);
    expect(code).toBe(1);
    expect(stderr).not.toContain('judge retry');
    expect(stderr.split('\n').at(-2)).toBe(
      `rpv: eval: judge http://127.0.0.1:${port}/v1/chat/completions cannot be reached: connect ECONNREFUSED 127.0.0.1:${port}: is the server running, and is --base-url right?`,
    );
  });
});
