import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JudgeClient, judgeSamples, type EvalSample } from '../../src/index.js';
import { JudgeCache, MMROLE_METRICS, VIDEO2ROLEPLAY_METRICS, parseRetryAfter, readReviewFile, summarizeReviews } from '../../src/eval/index.js';
import { startFakeJudge, type FakeJudge } from './judge-server.js';

const repo = path.resolve(import.meta.dirname, '../..');

function sample(id: string, kase: string, answer: string | null = 'Ha! Those are tiny mechanical birds.', reference = 'Looks like my old suit designs.'): EvalSample {
  return {
    id,
    role: 'Iron Man',
    script: 'The Avengers',
    otherRole: 'a curious human',
    question: `case=${kase} What do you think of this image?`,
    reference,
    answer,
    image: null,
    source: { id, role: 'Iron Man' },
  };
}

let judge: FakeJudge;
let tmp: string;
beforeAll(async () => {
  judge = await startFakeJudge({ slowMs: 5000 });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-judge-'));
});
afterAll(async () => {
  await judge.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

function client(cache: JudgeCache | null, extra: Partial<ConstructorParameters<typeof JudgeClient>[0]> = {}): JudgeClient {
  return new JudgeClient({
    baseUrl: judge.url,
    model: 'fake-judge',
    apiKey: 'sk-test',
    concurrency: 4,
    maxRetries: 3,
    timeoutMs: 10_000,
    backoffMs: 5,
    maxBackoffMs: 20,
    cache,
    ...extra,
  });
}

describe('judging against a chat-completions server', () => {
  const samples = [
    sample('s-ok', 'ok'),
    sample('s-malformed', 'malformed'),
    sample('s-hopeless', 'hopeless'),
    sample('s-429', 'ratelimit'),
    sample('s-500', 'error500'),
    sample('s-none', 'ok', null),
  ];
  let first: Awaited<ReturnType<typeof judgeSamples>>;
  let firstClient: JudgeClient;

  it('scores every review, retrying 429 / 500 and re-asking malformed reviews', async () => {
    const cache = await JudgeCache.open(path.join(tmp, 'cache'));
    firstClient = client(cache);
    first = await judgeSamples(samples, { metricSet: MMROLE_METRICS, client: firstClient, parseRetries: 2 });
    const { summary, counts } = first;
    expect(judge.authorizations).toEqual(new Set(['Bearer sk-test']));
    expect(counts).toEqual({ samples: 6, judged: 5, reviews: 40, scored: 32, failed: 8, parseRetries: 8 + 16 });
    expect(firstClient.stats.retries).toEqual({ '429': 8, '500': 8 });
    expect(firstClient.stats.failed).toBe(0);
    expect(summary.unreviewed).toEqual([{ id: 's-none', reason: 'no evaluated answer' }]);
    expect(summary.reviewed).toBe(5);
    // The hopeless sample is reported on every metric, never dropped silently.
    expect(summary.failures).toHaveLength(8);
    expect(summary.failures[0]).toEqual({
      id: 's-hopeless',
      metric: 'Instruction Adherence',
      order: 'forward',
      reason: 'unparseable after 3 asks: no [Scores]: (a, b) pair found',
      review: 'I would rather not assign numbers to these responses.',
    });
    for (const m of summary.metrics) {
      // ok, ratelimit, error500 give 8/10; malformed gives 7/10 once re-asked.
      expect(m).toMatchObject({ count: 4, failed: 1 });
      expect(m.mean).toBeCloseTo((3 * 0.8 + 0.7) / 4, 12);
      expect(m.meanEvaluated).toBeCloseTo((3 * 8 + 7) / 4, 12);
      expect(m.meanGroundTruth).toBe(10);
    }
    expect(summary.overall.mean).toBeCloseTo(0.775, 12);
  });

  it('writes reviews that --from-reviews re-aggregates to the same numbers', () => {
    const again = summarizeReviews(first.reviews, { metrics: MMROLE_METRICS });
    expect(again.metrics.map((m) => m.mean)).toEqual(first.summary.metrics.map((m) => m.mean));
    expect(again.failures.map((f) => [f.id, f.metric])).toEqual(first.summary.failures.map((f) => [f.id, f.metric]));
  });

  it('resumes from the cache: a second run makes no call', async () => {
    const before = judge.total();
    const cache = await JudgeCache.open(path.join(tmp, 'cache'));
    const second = client(cache);
    const rerun = await judgeSamples(samples, { metricSet: MMROLE_METRICS, client: second, parseRetries: 2 });
    expect(judge.total()).toBe(before);
    expect(second.stats.requests).toBe(0);
    expect(second.stats.cacheHits).toBe(firstClient.stats.completed);
    expect(rerun.summary).toEqual(first.summary);
  });

  it('ignores a cache line cut short by a kill', async () => {
    const dir = path.join(tmp, 'cut');
    const cache = await JudgeCache.open(dir);
    await cache.put('k1', 'fake-judge', 'review one [Scores]: (1, 2)');
    await fs.appendFile(cache.file, '{"key":"k2","model":"fake-jud');
    const reopened = await JudgeCache.open(dir);
    expect([reopened.size, reopened.corruptLines]).toEqual([1, 1]);
    await reopened.put('k3', 'fake-judge', 'three');
    expect((await JudgeCache.open(dir)).size).toBe(2);
  });

  it('averages both orders with --swap and shows the position bias', async () => {
    const run = await judgeSamples([sample('b', 'bias', 'GOOD', 'PLAIN')], {
      metricSet: VIDEO2ROLEPLAY_METRICS,
      client: client(null),
      swap: true,
    });
    // Forward: A = GOOD (8 + 1 first-position bonus), B = PLAIN 6 -> 9/6.
    // Swapped: A = PLAIN (6 + 1), B = GOOD 8 -> evaluated 8 / ground truth 7.
    for (const m of run.summary.metrics) {
      expect(m.meanForward).toBe(9 / 6);
      expect(m.meanSwapped).toBe(8 / 7);
      expect(m.mean).toBe((9 / 6 + 8 / 7) / 2);
      expect(m.meanEvaluated).toBe((9 + 8) / 2);
      expect(m.meanGroundTruth).toBe((6 + 7) / 2);
    }
    expect(run.counts.reviews).toBe(16);
    expect(run.reviews[0]!.rm_review_swapped!['Human Likeness']!.score).toEqual([7, 8]);
    // Re-aggregating the written reviews (both orders) gives the same numbers.
    expect(summarizeReviews(run.reviews, { metrics: VIDEO2ROLEPLAY_METRICS }).metrics.map((m) => m.mean)).toEqual(
      run.summary.metrics.map((m) => m.mean),
    );
  });

  it('retries a reply that does not come within the timeout', async () => {
    // One metric, so one slow first reply (5 s) against a 500 ms limit.
    const oneMetric = { ...MMROLE_METRICS, metrics: MMROLE_METRICS.metrics.slice(0, 1) };
    const c = client(null, { timeoutMs: 500 });
    const run = await judgeSamples([sample('s-slow', 'slow')], { metricSet: oneMetric, client: c });
    expect(c.stats.retries.timeout).toBeGreaterThanOrEqual(1);
    expect(run.counts).toMatchObject({ scored: 1, failed: 0 });
    expect(run.summary.metrics[0]!.mean).toBe(0.8);
  });

  it('stops at once on an error retrying cannot fix', async () => {
    const c = client(null);
    await expect(judgeSamples([sample('u', 'unauthorized')], { metricSet: MMROLE_METRICS, client: c })).rejects.toThrow(
      `eval: judge ${judge.url}/chat/completions: HTTP 401: Incorrect API key provided (set RPV_JUDGE_API_KEY or OPENAI_API_KEY)`,
    );
  });

  it('gives up on a call after its retries and reports it', async () => {
    const c = client(null, { maxRetries: 0 });
    const run = await judgeSamples([sample('r', 'ratelimit', 'first try only')], { metricSet: MMROLE_METRICS, client: c });
    expect(run.counts.failed).toBe(8);
    expect(run.summary.failures[0]!.reason).toBe(
      `eval: judge ${judge.url}/chat/completions: gave up after 1 attempts: HTTP 429: Rate limit reached for requests`,
    );
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0.05')).toBe(50);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:05 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(5000);
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  it('rpv eval --answers judges through the CLI and writes the report', async () => {
    const answers = path.join(tmp, 'answers.json');
    // MMRole's answers layout.
    await fs.writeFile(
      answers,
      JSON.stringify([
        {
          id: 'Iron_Man_comment_1',
          image: 'COCO/000000224155.jpg',
          role: 'Iron Man',
          script: 'The Avengers',
          other_role: 'a curious human',
          conversations: [
            { from: 'user', value: 'case=ok Tell me about this picture.' },
            { from: 'assistant', value: 'Nice suit.', answer: 'Genius at work.' },
          ],
        },
      ]),
    );
    const out = path.join(tmp, 'cli-report');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'eval', '--answers', answers, '--metrics', 'mmrole', '--base-url', judge.url, '--model', 'fake-judge', '--out', out],
      { cwd: repo, env: { ...process.env, RPV_JUDGE_API_KEY: 'sk-cli' } },
    );
    expect(stdout).toContain('samples 1, judged 1, empty answers 0, reviews 8 (scored 8, failed 0, re-asked 0), calls 8 + 0 from cache');
    expect(judge.authorizations.has('Bearer sk-cli')).toBe(true);
    const csv = await fs.readFile(path.join(out, 'report.csv'), 'utf8');
    expect(csv.split('\n')[1]).toBe('Instruction Adherence,1,0,0.8,8.0,10.0');
    const reviews = await readReviewFile(path.join(out, 'reviews.json'));
    expect(summarizeReviews(reviews, { metrics: MMROLE_METRICS }).metrics[0]!.mean).toBe(0.8);
  });
});
