import type { Argv, CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

interface ServeArgs {
  answers: string[];
  db: string;
  port: number;
  host: string;
  'allow-host'?: string[];
  'media-root'?: string;
  shards?: string;
  metrics?: 'video2roleplay' | 'mmrole';
  raters?: string[];
  seed?: string;
  pairwise?: boolean;
}

const serve: CommandModule<object, ServeArgs> = {
  command: 'serve <answers..>',
  describe: 'Serve the rating page: raters score answers blind, every rating stored in a DuckDB file',
  builder: (y: Argv) =>
    y
      .positional('answers', { type: 'string', array: true, demandOption: true, describe: 'Answers files (what rpv eval --answers reads), one per system; [name=]file names the system' })
      .option('db', { type: 'string', demandOption: true, describe: 'Ratings database (DuckDB file; created when missing, resumed otherwise)' })
      .option('port', { type: 'number', default: 8765, describe: 'Port (0: any free port)' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to listen on; beyond loopback every rater needs a token (--raters)' })
      .option('allow-host', { type: 'string', array: true, describe: 'More names raters reach the server by (a DNS name, a proxy): requests for any other Host are refused' })
      .option('media-root', { type: 'string', describe: "The export folder the items' videos (and images) are served from" })
      .option('shards', { type: 'string', describe: "Shard folder: show an item's sampled frames when there is no video" })
      .option('metrics', { type: 'string', choices: ['video2roleplay', 'mmrole'], describe: 'Metric set (default video2roleplay; kept with the database)' })
      .option('raters', { type: 'string', array: true, describe: 'Rater names to make personal links (tokens) for: --raters alice bob; tokens are then required, on loopback too' })
      .option('seed', { type: 'string', describe: 'Seed of the blind item and answer orders (default: random, kept with the database)' })
      .option('pairwise', { type: 'boolean', describe: 'Rate items with two answers as A / B / tie (default; --no-pairwise scores each answer 1-10)' })
      .example('rpv rate serve runs/demo/eval/answers.json --db ratings.duckdb --media-root runs/demo-data/export', 'Rate one system, videos from the export')
      .example('rpv rate serve base=base/answers.json lora=lora/answers.json --db ab.duckdb --raters alice bob', 'Two systems side by side (pairwise), personal links for two raters')
      .example('rpv rate serve answers.jsonl --db r.duckdb --host 0.0.0.0 --raters alice bob --shards shards/demo', 'On the network (tokens required), frames from the shards') as unknown as Argv<ServeArgs>,
  handler: async (args) => {
    const { serveRatings } = await import('../rate/serve.js');
    const { parseAnswersSource } = await import('../rate/items.js');
    const raters = (args.raters ?? []).flatMap((r) => r.split(',')).map((r) => r.trim()).filter((r) => r !== '');
    const service = await serveRatings({
      answers: args.answers.map(parseAnswersSource),
      db: args.db,
      host: args.host,
      allowHosts: args['allow-host'],
      port: args.port,
      mediaRoot: args['media-root'] ?? null,
      shards: args.shards ?? null,
      metrics: args.metrics,
      raters,
      seed: args.seed,
      pairwise: args.pairwise,
    });
    const { items, session } = service;
    const pairwise = items.items.filter((i) => i.mode === 'pairwise').length;
    const out = (line: string) => process.stdout.write(`${line}\n`);
    out(
      `rate: ${items.items.length} items (${pairwise} pairwise, ${items.items.length - pairwise} scored 1-10) of ${items.systems.length} system${items.systems.length === 1 ? '' : 's'}, ` +
        `read ${items.read} from ${args.answers.length} file${args.answers.length === 1 ? '' : 's'}` +
        (items.skipped.length > 0 ? `; ${items.skipped.length} skipped (${items.skipped[0]!.reason}: ${items.skipped.map((s) => s.id).slice(0, 5).join(', ')}${items.skipped.length > 5 ? ', ...' : ''})` : ''),
    );
    out(`rate: ${args.db}: ${service.stored} ratings so far; metrics ${session.metricSet.name} (${session.metricSet.metrics.length})`);
    for (const w of service.warnings) process.stderr.write(`${w}\n`);
    for (const p of service.mediaProblems.slice(0, 10)) out(`rate: item ${p.id}: no video: ${p.problem}`);
    if (service.mediaProblems.length > 10) out(`rate: ... and ${service.mediaProblems.length - 10} more items without video`);
    out(`rate: open ${service.url}${service.requireTokens ? ' with a rater link (tokens required)' : ' and give your name'}`);
    for (const r of service.raterLinks) out(`  ${r.name}  ${r.url}`);
    out('Ctrl-C stops the server; every rating the page showed as saved is already on disk.');
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    const ratings = await session.store.current();
    const byRater = new Map<string, number>();
    for (const r of ratings) byRater.set(r.rater, (byRater.get(r.rater) ?? 0) + 1);
    await service.close();
    out(`rate: stopped; ${ratings.length} current ratings${byRater.size ? `: ${[...byRater].map(([n, c]) => `${n} ${c}`).join(', ')}` : ''}`);
  },
};

interface ExportArgs {
  db: string;
  csv?: string;
  json?: string;
  history: boolean;
}

const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export',
  describe: 'Write the ratings as CSV (rater,item,metric,score,system,time,kind) or JSON',
  builder: (y: Argv) =>
    y
      .option('db', { type: 'string', demandOption: true, describe: 'Ratings database written by rpv rate serve' })
      .option('csv', { type: 'string', describe: 'CSV file to write' })
      .option('json', { type: 'string', describe: 'JSON file to write (--json alone: stdout)' })
      .option('history', { type: 'boolean', default: false, describe: 'Every rating ever stored (changed ones too), with seq and current' })
      .example('rpv rate export --db ratings.duckdb --csv ratings.csv', 'Current ratings as CSV')
      .example('rpv rate export --db ratings.duckdb --json', 'As JSON on stdout') as unknown as Argv<ExportArgs>,
  handler: async (args) => {
    if (args.csv === undefined && args.json === undefined) throw new RpvError('rate export: give --csv <file> and/or --json [file]');
    const { exportRatings } = await import('../rate/export.js');
    const { formatRatingsCsv } = await import('../rate/csv.js');
    const { writeFileAtomic } = await import('../util/atomic.js');
    const result = await exportRatings(args.db, { history: args.history });
    const written: string[] = [];
    if (args.csv !== undefined) {
      await writeFileAtomic(args.csv, formatRatingsCsv(result.rows));
      written.push(args.csv);
    }
    if (args.json !== undefined) {
      const text = `${JSON.stringify(result.rows, null, 2)}\n`;
      if (args.json === '' || args.json === '-') process.stdout.write(text);
      else {
        await writeFileAtomic(args.json, text);
        written.push(args.json);
      }
    }
    const raters = Object.entries(result.raters).map(([n, c]) => `${n} ${c}`).join(', ');
    process.stderr.write(
      `rate export: ${result.rows.length} ratings${args.history ? ' (history)' : ''} of ${Object.keys(result.raters).length} raters${raters ? ` (${raters})` : ''}; ` +
        `${result.stored} stored in all${result.server ? ` (read through the running rpv rate serve, process ${result.server.pid})` : ''}${written.length ? `; wrote ${written.join(', ')}` : ''}\n`,
    );
  },
};

interface AgreementArgs {
  ratings: string;
  level: 'nominal' | 'ordinal' | 'interval' | 'ratio';
  resamples: number;
  confidence: number;
  seed: number;
  json: boolean;
}

const agreement: CommandModule<object, AgreementArgs> = {
  command: 'agreement <ratings>',
  describe: "Inter-rater agreement per metric: Krippendorff's alpha with a bootstrap interval",
  builder: (y: Argv) =>
    y
      .positional('ratings', { type: 'string', demandOption: true, describe: 'Ratings CSV (rpv rate export; needs rater,item,metric,score)' })
      .option('level', { type: 'string', choices: ['nominal', 'ordinal', 'interval', 'ratio'], default: 'interval', describe: 'Level of measurement of the scores (pairwise ratings are nominal)' })
      .option('resamples', { type: 'number', default: 1000, describe: 'Bootstrap resamples of the units (0: no interval)' })
      .option('confidence', { type: 'number', default: 0.95, describe: 'Confidence of the interval' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the bootstrap' })
      .option('json', { type: 'boolean', default: false, describe: 'Print {"<metric>": {"alpha": ..., ...}} as JSON' })
      .example('rpv rate agreement ratings.csv', 'Interval alpha per metric with 95% intervals')
      .example('rpv rate agreement ratings.csv --level ordinal --json', 'Ordinal alpha as JSON') as unknown as Argv<AgreementArgs>,
  handler: async (args) => {
    if (!(args.confidence > 0 && args.confidence < 1)) throw new RpvError(`rate agreement: --confidence must be between 0 and 1, got ${args.confidence}`);
    if (!(Number.isInteger(args.resamples) && args.resamples >= 0)) throw new RpvError(`rate agreement: --resamples must be a whole number >= 0, got ${args.resamples}`);
    const { readRatingsCsv } = await import('../rate/csv.js');
    const { ratingsAgreement, formatAgreementTable } = await import('../rate/agreement.js');
    const rows = await readRatingsCsv(args.ratings);
    if (rows.length === 0) throw new RpvError(`rate agreement: ${args.ratings}: no ratings`);
    let result;
    try {
      result = ratingsAgreement(rows, { level: args.level, resamples: args.resamples, confidence: args.confidence, seed: args.seed, source: args.ratings });
    } catch (err) {
      if (err instanceof RpvError) throw err;
      throw new RpvError(`rate agreement: ${args.ratings}: ${(err as Error).message}`);
    }
    if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else process.stdout.write(`${formatAgreementTable(result)}\n`);
  },
};

interface CompareArgs {
  human: string;
  judge: string[];
  'judge-score': 'evaluated' | 'ratio';
  json: boolean;
}

const compare: CommandModule<object, CompareArgs> = {
  command: 'compare',
  describe: "The LLM judge against the humans: Spearman and Kendall per metric, per-system means side by side",
  builder: (y: Argv) =>
    y
      .option('human', { type: 'string', demandOption: true, describe: 'Ratings CSV (rpv rate export)' })
      .option('judge', { type: 'string', array: true, demandOption: true, describe: 'rpv eval report folder(s), one per system: [system=]folder' })
      .option('judge-score', { type: 'string', choices: ['evaluated', 'ratio'], default: 'evaluated', describe: "The judge's score: its 1-10 score of the answer, or a/b against the ground truth" })
      .option('json', { type: 'boolean', default: false, describe: 'Print the comparison as JSON' })
      .example('rpv rate compare --human ratings.csv --judge runs/demo/eval', "One system: the judge's scores against the mean human score per item")
      .example('rpv rate compare --human ab.csv --judge base=runs/base/eval --judge lora=runs/lora/eval --json', 'Two systems') as unknown as Argv<CompareArgs>,
  handler: async (args) => {
    const { readRatingsCsv } = await import('../rate/csv.js');
    const { compareJudgeWithHumans, formatComparison, parseJudgeSource, readJudgeScores } = await import('../rate/compare.js');
    const rows = await readRatingsCsv(args.human);
    const judges = [];
    for (const spec of args.judge) judges.push(await readJudgeScores(parseJudgeSource(spec)));
    const result = compareJudgeWithHumans(rows, judges, { judgeScore: args['judge-score'] });
    if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else process.stdout.write(`${formatComparison(result)}\n`);
  },
};

export const command: CommandModule = {
  command: 'rate <action>',
  describe: 'Human evaluation: a blind rating page, stored ratings, agreement, judge vs humans',
  builder: (y: Argv) =>
    y
      .command(serve as unknown as CommandModule)
      .command(exportCommand as unknown as CommandModule)
      .command(agreement as unknown as CommandModule)
      .command(compare as unknown as CommandModule)
      .demandCommand(1, 'Name an action: rpv rate serve | export | agreement | compare')
      .example('rpv rate serve answers.json --db ratings.duckdb --media-root export/', 'Rate answers in the browser')
      .example('rpv rate agreement ratings.csv', "Krippendorff's alpha per metric"),
  handler: () => undefined,
};
