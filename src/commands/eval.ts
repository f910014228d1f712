import type { Argv, CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';
import { REFERENCE_METRICS, type ReferenceMetric } from '../eval/reference.js';

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
  run?: string;
  shards?: string;
  'base-model'?: string;
  'max-new-tokens': number;
  perplexity: boolean;
  generate: boolean;
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
      .option('metrics', {
        type: 'string',
        describe:
          'Comma-separated: a judged set (video2roleplay or mmrole) and/or judge-free reference scores (rouge: ROUGE-L F1, bleu: corpus BLEU-4). ' +
          'Default: rouge,bleu, plus video2roleplay when --base-url is given; with --from-reviews: the metrics in the file',
      })
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
      .option('limit', { type: 'number', describe: 'Judge only the first N answers (held-out dialogues with --run)' })
      .option('run', { type: 'string', describe: "A training run (or checkpoint): generate the role's replies on its held-out split, and its loss and perplexity" })
      .option('shards', { type: 'string', describe: "Shards for --run (default: the run's data.shards)" })
      .option('base-model', { type: 'string', describe: "Base model folder for --run (default: the run's model.path)" })
      .option('max-new-tokens', { type: 'number', default: 128, describe: 'Tokens per generated reply (--run)' })
      .option('generate', { type: 'boolean', default: true, describe: "Generate the role's replies on the held-out split (--run; written to <out>/answers.json)" })
      .option('perplexity', { type: 'boolean', default: true, describe: 'Held-out loss and perplexity (--run; --no-perplexity to skip)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' })
      .example('rpv eval --from-reviews reviews/mmrole-agent/comment_test.json --metrics mmrole --json', 'Re-aggregate MMRole-Eval reviews')
      .example('rpv eval --run runs/demo --out runs/demo/eval --base-url http://127.0.0.1:8000/v1 --model judge', 'Generate held-out replies of a trained run, judge them, and report perplexity')
      .example('rpv eval --run runs/demo --out runs/demo/eval --metrics rouge,bleu', 'No judge: perplexity, ROUGE-L and BLEU of the held-out replies, per role and overall')
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
  const chosen = args.metrics ? parseMetricsOption(args.metrics) : undefined;
  if (chosen && chosen.reference.length > 0) {
    throw new RpvError(`eval: --metrics ${chosen.reference.join(',')} scores answers against references: give --answers <file> or --run <run>, not --from-reviews`);
  }
  const metrics = chosen?.judged ? getMetricSet(chosen.judged) : undefined;
  if (args.out && args['from-reviews']!.length !== 1) throw new RpvError('eval: --out with --from-reviews takes one review file (one report per folder)');
  const results = [];
  let failed = 0;
  for (const file of args['from-reviews']!) {
    const summary = summarizeReviews(await readReviewFile(file), { metrics, source: file });
    failed += summary.failures.length;
    results.push({ file, summary });
  }
  if (args.out) {
    const { writeEvalReport } = await import('../eval/report.js');
    await writeEvalReport(args.out, { summary: results[0]!.summary, reviews: results[0]!.file });
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
  if (args.answers && args.run) throw new RpvError('eval: give --answers (answers to judge) or --run (generate them), not both');
  if (!args.answers && !args.run) {
    throw new RpvError('eval: nothing to evaluate: give --answers <file>, --run <run folder> or --from-reviews <file>');
  }
  if (!args.out) throw new RpvError('eval: --out <folder> is required (the report and the judge cache go there)');
  const chosen = args.metrics ? parseMetricsOption(args.metrics) : { judged: args['base-url'] ? ('video2roleplay' as const) : null, reference: [...REFERENCE_METRICS] };
  if (chosen.judged && !args['base-url']) {
    throw new RpvError(`eval: --metrics ${chosen.judged} needs a judge: pass --base-url and --model (or --metrics rouge,bleu to score without one)`);
  }
  const path = await import('node:path');
  const { readAnswersFile } = await import('../eval/samples.js');
  const { getMetricSet } = await import('../eval/metrics.js');
  const { JudgeClient, judgeApiKeyFromEnv } = await import('../eval/client.js');
  const { JudgeCache } = await import('../eval/cache.js');
  const { judgeSamples } = await import('../eval/judge.js');
  const { summarizeScores } = await import('../eval/aggregate.js');
  const { writeEvalReport, formatSummaryTable } = await import('../eval/report.js');
  const { writeFileAtomic } = await import('../util/atomic.js');
  const { Progress } = await import('../util/progress.js');

  const { scoreReferences, formatReferenceTable, formatReferenceCsv } = await import('../eval/reference.js');
  const metricSet = getMetricSet(chosen.judged ?? 'video2roleplay');
  const report: Record<string, unknown> = { metricSet: metricSet.name };
  let samples;
  if (args.run) {
    const { evaluateHeldOut } = await import('../eval/heldout.js');
    const held = await evaluateHeldOut({
      run: args.run,
      shards: args.shards,
      modelPath: args['base-model'],
      limit: args.limit,
      maxNewTokens: args['max-new-tokens'],
      generate: args.generate,
      perplexity: args.perplexity,
      progress: new Progress({ label: 'held-out', unit: 'dialogues' }),
    });
    samples = held.samples;
    report.run = { checkpoint: held.checkpoint, shards: held.shards, heldOutDialogues: held.heldOutDialogues };
    report.perplexity = held.perplexity;
    if (held.perplexity) {
      const p = held.perplexity;
      process.stderr.write(`held-out loss ${p.loss.toFixed(4)}  perplexity ${p.perplexity.toFixed(2)}  (${p.tokens} tokens, ${p.samples} dialogues)\n`);
    }
    if (samples.length > 0) await writeFileAtomic(path.join(args.out, 'answers.json'), `${JSON.stringify(samples.map((s) => s.source), null, 2)}\n`);
  } else {
    samples = await readAnswersFile(args.answers!);
    if (args.limit !== undefined) samples = samples.slice(0, args.limit);
    report.answers = args.answers;
  }

  // An empty answer is a failure of the evaluated model: listed, and the exit code says so.
  const empty = samples.filter((s) => s.answer === null).map((s) => s.id);
  report.emptyAnswers = empty;
  const referenceFiles: string[] = [];
  if (chosen.reference.length > 0 && samples.length > 0) {
    const scores = scoreReferences(samples, chosen.reference);
    report.reference = scores;
    const file = path.join(args.out, 'reference.csv');
    await writeFileAtomic(file, formatReferenceCsv(scores));
    referenceFiles.push(file);
    if (!args.json) process.stdout.write(`${formatReferenceTable(scores)}\n`);
  }
  const printEmpty = () => {
    if (args.json) return;
    for (const id of empty) process.stdout.write(`  failed: ${id}: empty answer\n`);
  };

  if (!chosen.judged) {
    // No judge: perplexity (--run), reference scores and the answers (judge them later with --answers).
    const summary = summarizeScores({ metricSet: metricSet.name, metrics: [], sampleIds: [], scores: [] });
    const files = await writeEvalReport(args.out, { ...report, summary });
    if (args.json) process.stdout.write(`${JSON.stringify({ ...report, summary }, null, 2)}\n`);
    else {
      printEmpty();
      const answersFile = args.run && samples.length > 0 ? [path.join(args.out, 'answers.json')] : [];
      const why = args['base-url'] ? `no judged set in --metrics ${args.metrics}` : 'no judge (--base-url) given';
      process.stdout.write(`${why}: nothing judged; wrote ${[files[0], ...referenceFiles, ...answersFile].join(', ')}\n`);
    }
    return empty.length > 0 ? 2 : 0;
  }
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
  const run = await judgeSamples(samples, {
    metricSet,
    client,
    swap: args.swap,
    parseRetries: args['parse-retries'],
    imageDir: args['image-dir'] ?? null,
    progress: new Progress({ label: 'eval', unit: 'reviews' }),
  });
  Object.assign(report, {
    summary: run.summary,
    judge: { url: client.url, model: client.model, temperature: args.temperature, swap: args.swap },
    counts: { ...run.counts, cacheHits: client.stats.cacheHits, requests: client.stats.requests, cacheEntries: cache.size },
    client: client.stats,
  });
  const files = await writeEvalReport(args.out, { ...report, summary: run.summary }, run.reviews);
  if (args.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(`${formatSummaryTable(run.summary)}\n`);
    const c = run.counts;
    process.stdout.write(
      `samples ${c.samples}, judged ${c.judged}, empty answers ${empty.length}, reviews ${c.reviews} (scored ${c.scored}, failed ${c.failed}, re-asked ${c.parseRetries}), ` +
        `calls ${client.stats.completed} + ${client.stats.cacheHits} from cache\n`,
    );
    printEmpty();
    for (const f of run.summary.failures) process.stdout.write(`  failed: ${f.id} ${f.metric} (${f.order}): ${f.reason}\n`);
    process.stdout.write(`wrote ${[...files, ...referenceFiles].join(', ')}\n`);
  }
  return run.counts.failed > 0 || empty.length > 0 ? 2 : 0;
}

/** `--metrics a,b`: at most one judged set, and any of the reference scores. */
export function parseMetricsOption(value: string): { judged: 'video2roleplay' | 'mmrole' | null; reference: ReferenceMetric[] } {
  let judged: 'video2roleplay' | 'mmrole' | null = null;
  const reference: ReferenceMetric[] = [];
  for (const name of value.split(',').map((n) => n.trim()).filter((n) => n !== '')) {
    if (name === 'video2roleplay' || name === 'mmrole') {
      if (judged && judged !== name) throw new RpvError(`eval: --metrics names two judged sets (${judged}, ${name}); judge one per run`);
      judged = name;
    } else if ((REFERENCE_METRICS as readonly string[]).includes(name)) {
      if (!reference.includes(name as ReferenceMetric)) reference.push(name as ReferenceMetric);
    } else {
      throw new RpvError(`eval: --metrics: unknown metric '${name}'; choose from video2roleplay, mmrole, rouge, bleu`);
    }
  }
  if (!judged && reference.length === 0) throw new RpvError('eval: --metrics is empty; choose from video2roleplay, mmrole, rouge, bleu');
  return { judged, reference };
}
