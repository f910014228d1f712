import type { Argv, CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

interface EvalArgs {
  'from-reviews'?: string[];
  answers?: string;
  metrics?: string;
  'base-url'?: string;
  model?: string;
  'api-key-env'?: string;
  concurrency: number;
  'max-retries': number;
  'timeout-sec': number;
  'parse-retries': number;
  'max-tokens': number;
  temperature: number;
  swap: boolean;
  'image-dir'?: string;
  'cache-dir'?: string;
  out?: string;
  limit?: number;
  json: boolean;
}

/**
 * `rpv eval`: judge role-play answers on eight metrics with an LLM (MMRole-Eval's protocol), or
 * re-aggregate existing judge reviews. Exit 0 when every review was scored, 2 when some review
 * stayed unparseable or failed (they are listed; the report is still written).
 */
export const command: CommandModule<object, EvalArgs> = {
  command: 'eval',
  describe: 'Judge role-play answers on eight metrics with an LLM (MMRole-Eval protocol), or aggregate judge reviews',
  builder: (yargs: Argv) =>
    yargs
      .option('from-reviews', { type: 'string', array: true, describe: 'Aggregate review file(s) in MMRole-Eval layout (no judge calls)' })
      .option('answers', { type: 'string', describe: 'Answers to judge: JSON array or JSONL, MMRole answers layout or {id, role, question, reference, answer}' })
      .option('metrics', { type: 'string', choices: ['video2roleplay', 'mmrole'], describe: 'Metric set (default: video2roleplay; with --from-reviews: the metrics in the file)' })
      .option('base-url', { type: 'string', describe: 'OpenAI-compatible API root of the judge, e.g. http://127.0.0.1:8000/v1' })
      .option('model', { type: 'string', describe: 'Judge model name' })
      .option('api-key-env', { type: 'string', describe: 'Environment variable holding the API key (default RPV_JUDGE_API_KEY, then OPENAI_API_KEY)' })
      .option('concurrency', { type: 'number', default: 4, describe: 'Judge calls in flight' })
      .option('max-retries', { type: 'number', default: 6, describe: 'Retries of a call on 429/5xx/timeout/network errors' })
      .option('timeout-sec', { type: 'number', default: 120, describe: 'Time limit of one judge call' })
      .option('parse-retries', { type: 'number', default: 2, describe: 'Asks again after a review without a readable [Scores] pair' })
      .option('max-tokens', { type: 'number', default: 1024, describe: 'Token limit of one review' })
      .option('temperature', { type: 'number', default: 0, describe: 'Judge sampling temperature' })
      .option('swap', { type: 'boolean', default: false, describe: 'Also judge with the ground truth shown first; average both orders (position bias)' })
      .option('image-dir', { type: 'string', describe: "Folder of the samples' images: attach them for a multimodal judge" })
      .option('cache-dir', { type: 'string', describe: 'Judge-call cache (default <out>/cache): a rerun resumes without repeating calls' })
      .option('out', { type: 'string', describe: 'Report folder (report.json, report.csv, results.csv, reviews.json)' })
      .option('limit', { type: 'number', describe: 'Judge only the first N answers' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' })
      .example('rpv eval --from-reviews reviews/mmrole-agent/comment_test.json --metrics mmrole --json', 'Re-aggregate MMRole-Eval reviews')
      .example(
        'rpv eval --answers answers.json --metrics mmrole --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-72B-Instruct --swap --out runs/eval',
        'Judge a model\'s answers against the ground truth, both orders',
      ) as unknown as Argv<EvalArgs>,
  handler: async (args) => {
    if (args['from-reviews']?.length && args.answers) throw new RpvError('eval: give --from-reviews or --answers, not both');
    process.exitCode = args['from-reviews']?.length ? await aggregateCommand(args) : await judgeCommand(args);
  },
};

async function aggregateCommand(args: EvalArgs): Promise<number> {
  const { readReviewFile, summarizeReviews } = await import('../eval/reviews.js');
  const { getMetricSet } = await import('../eval/metrics.js');
  const { formatSummaryTable } = await import('../eval/report.js');
  const metrics = args.metrics ? getMetricSet(args.metrics) : undefined;
  const results = [];
  let failed = 0;
  for (const file of args['from-reviews']!) {
    const summary = summarizeReviews(await readReviewFile(file), { metrics, source: file });
    failed += summary.failures.length;
    results.push({ file, summary });
  }
  if (args.json) {
    const out = results.map(({ file, summary }) => ({
      file,
      count: summary.reviewed,
      samples: summary.samples,
      unreviewed: summary.unreviewed.length,
      failed: summary.failures.length,
      metrics: Object.fromEntries(summary.metrics.map((m) => [m.metric, m.mean])),
      counts: Object.fromEntries(summary.metrics.map((m) => [m.metric, m.count])),
      overall: summary.overall.mean,
      failures: summary.failures.map(({ id, metric, order, reason }) => ({ id, metric, order, reason })),
    }));
    process.stdout.write(`${JSON.stringify(out.length === 1 ? out[0] : out, null, 2)}\n`);
  } else {
    for (const { file, summary } of results) {
      process.stdout.write(`${file}: ${summary.reviewed} reviewed of ${summary.samples} samples, ${summary.failures.length} unparseable\n`);
      process.stdout.write(`${formatSummaryTable(summary)}\n`);
      for (const f of summary.failures) process.stdout.write(`  unparseable: ${f.id} ${f.metric} (${f.order}): ${f.reason}\n`);
    }
  }
  return failed > 0 ? 2 : 0;
}

async function judgeCommand(args: EvalArgs): Promise<number> {
  if (!args.answers) throw new RpvError('eval: nothing to evaluate: give --answers <file> (answers to judge) or --from-reviews <file> (reviews to aggregate)');
  if (!args.out) throw new RpvError('eval: --out <folder> is required when judging (the report and the judge cache go there)');
  const path = await import('node:path');
  const { readAnswersFile } = await import('../eval/samples.js');
  const { getMetricSet } = await import('../eval/metrics.js');
  const { JudgeClient, judgeApiKeyFromEnv } = await import('../eval/client.js');
  const { JudgeCache } = await import('../eval/cache.js');
  const { judgeSamples } = await import('../eval/judge.js');
  const { writeEvalReport, formatSummaryTable } = await import('../eval/report.js');
  const { Progress } = await import('../util/progress.js');

  const metricSet = getMetricSet(args.metrics ?? 'video2roleplay');
  let samples = await readAnswersFile(args.answers);
  if (args.limit !== undefined) samples = samples.slice(0, args.limit);
  const apiKey = args['api-key-env'] ? (process.env[args['api-key-env']] ?? null) : judgeApiKeyFromEnv();
  if (args['api-key-env'] && !apiKey) throw new RpvError(`eval: environment variable ${args['api-key-env']} (--api-key-env) is not set`);
  const cache = await JudgeCache.open(args['cache-dir'] ?? path.join(args.out, 'cache'));
  const client = new JudgeClient({
    baseUrl: args['base-url'] ?? '',
    model: args.model ?? '',
    apiKey,
    concurrency: args.concurrency,
    maxRetries: args['max-retries'],
    timeoutMs: args['timeout-sec'] * 1000,
    maxTokens: args['max-tokens'],
    temperature: args.temperature,
    cache,
    onRetry: ({ attempt, reason, delayMs }) => process.stderr.write(`eval: judge retry ${attempt} in ${(delayMs / 1000).toFixed(1)} s: ${reason}\n`),
  });
  const progress = new Progress({ label: 'eval', unit: 'reviews' });
  const run = await judgeSamples(samples, {
    metricSet,
    client,
    swap: args.swap,
    parseRetries: args['parse-retries'],
    imageDir: args['image-dir'] ?? null,
    progress,
  });
  const report = {
    summary: run.summary,
    metricSet: metricSet.name,
    answers: args.answers,
    judge: { url: client.url, model: client.model, temperature: args.temperature, swap: args.swap },
    counts: { ...run.counts, cacheHits: client.stats.cacheHits, requests: client.stats.requests, cacheEntries: cache.size },
    client: client.stats,
  };
  const files = await writeEvalReport(args.out, report, run.reviews);
  if (args.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(`${formatSummaryTable(run.summary)}\n`);
    const c = run.counts;
    process.stdout.write(
      `samples ${c.samples}, judged ${c.judged}, reviews ${c.reviews} (scored ${c.scored}, failed ${c.failed}, re-asked ${c.parseRetries}), ` +
        `calls ${client.stats.completed} + ${client.stats.cacheHits} from cache\n`,
    );
    for (const f of run.summary.failures) process.stdout.write(`  failed: ${f.id} ${f.metric} (${f.order}): ${f.reason}\n`);
    process.stdout.write(`wrote ${files.join(', ')}\n`);
  }
  return run.counts.failed > 0 ? 2 : 0;
}
