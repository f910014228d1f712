import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { exportRatings, ratingsAgreement } from '../../src/index.js';
import { RatingStore, formatRatingsCsv, krippendorffAlpha, readRatingsCsv, type RatingRow } from '../../src/rate/index.js';
import { repoRoot, tempDir } from './fixtures.js';

const run = promisify(execFile);
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), ...args], { cwd: repoRoot });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 observers x 12 units
// worked example (see krippendorff.test.ts), as a ratings CSV with missing ratings left out.
const N = null;
const example: (number | null)[][] = [
  [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
  [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
  [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
  [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
];

describe('ratings CSV and agreement', () => {
  it('exports the database as CSV and reads it back, quoting and Chinese intact', async () => {
    const dir = await tempDir('csv');
    const db = path.join(dir, 'r.duckdb');
    const store = await RatingStore.open(db, { create: true });
    await store.add({ rater: 'alice', item: 'q,1 "quoted"', metric: 'Tone Consistency', system: 'sys A', kind: 'score', score: 7, choice: null, label: 'A' });
    await store.add({ rater: '小明', item: 'line\nbreak', metric: 'Human Likeness', system: 'a vs b', kind: 'pairwise', score: null, choice: 'tie', label: 'tie' });
    await store.add({ rater: 'alice', item: 'q,1 "quoted"', metric: 'Tone Consistency', system: 'sys A', kind: 'score', score: 9, choice: null, label: 'A' });
    await store.close();

    const { rows, raters, stored } = await exportRatings(db);
    expect([rows.length, raters, stored]).toEqual([2, { alice: 1, 小明: 1 }, 3]);
    const csv = path.join(dir, 'r.csv');
    await fs.writeFile(csv, formatRatingsCsv(rows));
    const text = await fs.readFile(csv, 'utf8');
    expect(text.split('\n')[0]).toBe('rater,item,metric,score,system,time,kind');
    expect(text).toContain('alice,"q,1 ""quoted""",Tone Consistency,9,sys A,');
    const back = await readRatingsCsv(csv);
    expect(back.map(({ line, ...r }) => r)).toEqual(rows);
    expect(back.map((r) => r.line)).toEqual([2, 4]); // the item with a line break spans lines 2-3

    const history = await exportRatings(db, { history: true });
    expect(history.rows.map((r) => [r.seq, r.score, r.current])).toEqual([[1, 7, false], [2, 'tie', true], [3, 9, true]]);

    // The command writes the same CSV, and the JSON on stdout.
    const byCli = path.join(dir, 'cli.csv');
    const exported = await cli(['rate', 'export', '--db', db, '--csv', byCli, '--json']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(await fs.readFile(byCli, 'utf8')).toBe(text);
    expect(JSON.parse(exported.stdout)).toEqual(rows);
    expect(exported.stderr).toBe(`rate export: 2 ratings of 2 raters (alice 1, 小明 1); 3 stored in all; wrote ${byCli}\n`);
    const none = await cli(['rate', 'export', '--db', path.join(dir, 'missing.duckdb'), '--csv', byCli]);
    expect([none.code, none.stderr]).toEqual([1, `rpv: rate: ${path.join(dir, 'missing.duckdb')}: no such ratings database\n`]);
  }, 60_000);

  it('reports bad CSV lines by number', async () => {
    const dir = await tempDir('badcsv');
    const write = async (name: string, text: string) => {
      const f = path.join(dir, name);
      await fs.writeFile(f, text);
      return f;
    };
    const noScore = await write('a.csv', 'rater,item,metric\nx,y,z\n');
    await expect(readRatingsCsv(noScore)).rejects.toThrow(`rate: ${noScore} line 1: no 'score' column; the header needs rater,item,metric,score (found rater,item,metric)`);
    const short = await write('b.csv', 'rater,item,metric,score\nalice,q1,Tone,7\nalice,q2,Tone\n');
    await expect(readRatingsCsv(short)).rejects.toThrow(`rate: ${short} line 3: 3 fields, the header has 4`);
    const empty = await write('c.csv', 'rater,item,metric,score\n"multi\nline",q1,Tone,7\nbob,q1,Tone,\n');
    await expect(readRatingsCsv(empty)).rejects.toThrow(`rate: ${empty} line 4: empty score`);
    const kind = await write('d.csv', 'rater,item,metric,score,kind\nalice,q1,Tone,great,score\n');
    await expect(readRatingsCsv(kind)).rejects.toThrow(`rate: ${kind} line 2: score: expected a number, found 'great'`);
    const open = await write('e.csv', 'rater,item,metric,score\nalice,"q1,Tone,7\n');
    await expect(readRatingsCsv(open)).rejects.toThrow(`rate: ${open} line 2: quoted field not closed before the end of the file`);
    const twice: RatingRow[] = [
      { rater: 'a', item: 'q1', metric: 'Tone', score: 7, system: 's', time: '', kind: 'score', line: 2 },
      { rater: 'a', item: 'q1', metric: 'Tone', score: 8, system: 's', time: '', kind: 'score', line: 5 },
    ];
    expect(() => ratingsAgreement(twice, { source: 'x.csv' })).toThrow('rate: x.csv line 5: rater a rated item q1 (s) on Tone twice (also line 2); export current ratings only (without --history)');
  });

  it('computes alpha per metric: scores at the chosen level, pairwise choices as categories', () => {
    const rows: RatingRow[] = [];
    const add = (rater: string, item: string, metric: string, score: number | string, system: string, kind: RatingRow['kind']) => rows.push({ rater, item, metric, score, system, time: '', kind });
    example.forEach((values, o) => values.forEach((v, u) => v !== null && add(`obs${o}`, `unit${u + 1}`, 'Tone Consistency', v, 'sys', 'score')));
    for (const [rater, choices] of [['a', ['x', 'x', 'tie']], ['b', ['x', 'y', 'tie']], ['c', ['x', 'x', 'tie']]] as const) {
      choices.forEach((c, i) => add(rater, `p${i}`, 'Tone Consistency', c, 'x vs y', 'pairwise'));
    }
    add('a', 'q9', 'Human Likeness', 6, 'sys', 'score');
    const result = ratingsAgreement(rows, { level: 'ordinal', resamples: 200, seed: 1 });
    expect(Object.keys(result)).toEqual(['Tone Consistency (scores)', 'Tone Consistency (pairwise)', 'Human Likeness']);
    const scores = result['Tone Consistency (scores)']!;
    expect(scores.alpha!.toFixed(3)).toBe('0.815');
    expect(scores).toMatchObject({ kind: 'score', level: 'ordinal', raters: 4, items: 12, units: 12, pairableUnits: 11, ratings: 41, values: 40, confidence: 0.95 });
    expect(scores.low!).toBeLessThan(0.815);
    expect(scores.high!).toBeGreaterThan(0.815);
    const pairwise = result['Tone Consistency (pairwise)']!;
    const units = [['x', 'x', 'x'], ['x', 'y', 'x'], ['tie', 'tie', 'tie']];
    expect(pairwise).toMatchObject({ kind: 'pairwise', level: 'nominal', alpha: krippendorffAlpha(units, 'nominal').alpha, raters: 3, items: 3 });
    expect(result['Human Likeness']).toMatchObject({ alpha: null, reason: 'no unit has ratings from two raters', low: null, high: null, raters: 1 });
  });

  it('rpv rate agreement prints the table and the JSON', async () => {
    const dir = await tempDir('cli');
    const csv = path.join(dir, 'k.csv');
    const lines = ['rater,item,metric,score'];
    example.forEach((values, o) => values.forEach((v, u) => v !== null && lines.push(`obs${o},unit${u + 1},Tone Consistency,${v}`)));
    await fs.writeFile(csv, `${lines.join('\n')}\n`);
    const json = await cli(['rate', 'agreement', csv, '--level', 'interval', '--json', '--resamples', '300']);
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as Record<string, { alpha: number; low: number; high: number; raters: number }>;
    expect(Object.keys(parsed)).toEqual(['Tone Consistency']);
    expect(parsed['Tone Consistency']!.alpha.toFixed(3)).toBe('0.849');
    expect(parsed['Tone Consistency']!.raters).toBe(4);
    const table = await cli(['rate', 'agreement', csv, '--level', 'nominal', '--resamples', '0']);
    expect(table.stdout.split('\n')[1]).toMatch(/^Tone Consistency +nominal +0\.743 +- +4 +12 +12 \(11\) +41$/);
    const bad = await cli(['rate', 'agreement', path.join(dir, 'nope.csv')]);
    expect([bad.code, bad.stderr.trim()]).toEqual([1, `rpv: rate: cannot read ${path.join(dir, 'nope.csv')}: ENOENT: no such file or directory, open '${path.join(dir, 'nope.csv')}'`]);
  }, 120_000);
});
