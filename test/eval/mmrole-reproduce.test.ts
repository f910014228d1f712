import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { writeEvalReport } from '../../src/index.js';
import { MMROLE_METRICS, formatResultsCsv, readReviewFile, summarizeReviews } from '../../src/eval/index.js';

// MMRole-Eval's real judge reviews and published results (test/fixtures/mmrole, MIT, with their source).
const repo = path.resolve(import.meta.dirname, '../..');
const MMROLE = path.join(repo, 'test/fixtures/mmrole');

async function cases(): Promise<{ name: string; reviews: string; results: string }[]> {
  const out = [];
  for (const model of (await fs.readdir(path.join(MMROLE, 'results'))).sort()) {
    for (const csv of (await fs.readdir(path.join(MMROLE, 'results', model))).sort()) {
      out.push({
        name: `${model}/${csv}`,
        reviews: path.join(MMROLE, 'reviews', model, csv.replace(/\.csv$/, '.json')),
        results: path.join(MMROLE, 'results', model, csv),
      });
    }
  }
  return out;
}

function readCsv(text: string): Record<string, string> {
  const [header, row] = text.trim().split(/\r?\n/).map((l) => l.split(','));
  return Object.fromEntries(header!.map((h, i) => [h, row![i]!]));
}

describe('MMRole-Eval reproduction from raw review texts', async () => {
  const all = await cases();

  it('finds the published results', () => {
    expect(all.map((c) => c.name)).toEqual(['gpt-4-turbo/comment_test.csv', 'gpt-4-turbo/human-role_test.csv', 'gpt-4-turbo/inter-role_test.csv']);
  });

  it.each(all)('$name: every number of the published CSV, bit for bit', async ({ reviews, results }) => {
    const items = await readReviewFile(reviews);
    // Parse the texts only: blank out the stored scores so they cannot be used.
    for (const item of items) for (const entry of Object.values(item.rm_review ?? {})) entry.score = {};
    const summary = summarizeReviews(items, { metrics: MMROLE_METRICS });
    const published = readCsv(await fs.readFile(results, 'utf8'));
    expect(summary.failures).toEqual([]);
    expect(summary.reviewed).toBe(Number(published.count));
    expect(Object.keys(published).slice(1)).toEqual(MMROLE_METRICS.metrics.map((m) => m.name));
    for (const m of summary.metrics) {
      expect(m.count).toBe(Number(published.count));
      expect(m.mean).toBe(Number(published[m.metric]));
    }
    // The CSV rpv writes is the published file, byte for byte.
    expect(formatResultsCsv(summary)).toBe(await fs.readFile(results, 'utf8'));
  });

  it('writes the same results.csv from a report folder', async () => {
    const { reviews, results } = all[0]!;
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-eval-'));
    const summary = summarizeReviews(await readReviewFile(reviews), { metrics: MMROLE_METRICS });
    await writeEvalReport(dir, { summary });
    expect(await fs.readFile(path.join(dir, 'results.csv'), 'utf8')).toBe(await fs.readFile(results, 'utf8'));
    const report = JSON.parse(await fs.readFile(path.join(dir, 'report.json'), 'utf8'));
    expect(report.summary.reviewed).toBe(72);
  });

  it('counts a sample without review apart and lists an unparseable review with its reason', async () => {
    const items = await readReviewFile(all[0]!.reviews);
    delete items[3]!.rm_review;
    items[5]!.rm_review!['Fluency']!.review = 'Both are fluent.';
    const summary = summarizeReviews(items, { metrics: MMROLE_METRICS });
    expect(summary.reviewed).toBe(71);
    expect(summary.unreviewed).toEqual([{ id: items[3]!.id, reason: 'no rm_review (no evaluated answer)' }]);
    expect(summary.failures).toEqual([
      { id: items[5]!.id, metric: 'Fluency', order: 'forward', reason: 'no [Scores]: (a, b) pair found', review: 'Both are fluent.' },
    ]);
    const fluency = summary.metrics.find((m) => m.metric === 'Fluency')!;
    expect([fluency.count, fluency.failed]).toEqual([70, 1]);
    expect(summary.metrics.find((m) => m.metric === 'Coherency')!.count).toBe(71);
  });

  it('rpv eval --from-reviews --metrics mmrole --json prints the count and per-metric means', async () => {
    const { reviews, results } = all.find((c) => c.name.startsWith('gpt-4-turbo/human-role'))!;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'eval', '--from-reviews', reviews, '--metrics', 'mmrole', '--json'],
      { cwd: repo },
    );
    const out = JSON.parse(stdout);
    const published = readCsv(await fs.readFile(results, 'utf8'));
    expect(out.count).toBe(72);
    expect(out.failed).toBe(0);
    for (const [metric, value] of Object.entries(published).slice(1)) expect(out.metrics[metric]).toBe(Number(value));
  });
});
