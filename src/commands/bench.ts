import { appendFile } from 'node:fs/promises';
import type { Argv, CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

interface BenchLoaderArgs {
  shards: string;
  workers: number;
  'batch-size': number;
  formats: string;
  'window-shards': number;
  'prefetch-mb': number;
  verify: string;
  reps: number;
  results?: string;
  json: boolean;
}

const loader: CommandModule<object, BenchLoaderArgs> = {
  command: 'loader <shards>',
  describe: 'Loader throughput on a shard folder, beside a raw read of the same files (the ceiling)',
  builder: (y: Argv) =>
    y
      .positional('shards', { type: 'string', demandOption: true, describe: 'Shard folder written by rpv convert (with index.json)' })
      .option('workers', { type: 'number', default: 2, describe: 'Loader worker threads' })
      .option('batch-size', { type: 'number', default: 32, describe: 'Samples per batch' })
      .option('formats', { type: 'string', default: 'arrow,parquet', describe: 'Formats to measure, when the index has them' })
      .option('window-shards', { type: 'number', default: 4, describe: 'Shards mixed per shuffle window' })
      .option('prefetch-mb', { type: 'number', default: 512, describe: 'Prefetch bound (MiB of decoded shards)' })
      .option('verify', { type: 'string', default: 'both', choices: ['both', 'true', 'false'], describe: "The loader's sha256 shard checks: both (on and off, their cost in one run), or one mode" })
      .option('reps', { type: 'number', default: 1, describe: 'Timed epochs per mode (alternating); the median counts' })
      .option('results', { type: 'string', describe: 'Append one JSON line per case to this file (e.g. bench/results.jsonl)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the JSON lines on stdout instead of the summary' })
      .example('rpv bench loader shards/demo', 'Raw read vs loader (Arrow, then Parquet; shard checks on and off), shuffle on, 2 workers, batch 32')
      .example('rpv bench loader shards/demo --formats arrow --results bench/results.jsonl', 'Arrow only, appended to the results history') as Argv<BenchLoaderArgs>,
  handler: async (args) => {
    const formats = args.formats.split(',').map((f) => f.trim());
    for (const f of formats) if (f !== 'arrow' && f !== 'parquet') throw new RpvError(`rpv bench loader: --formats: expected arrow and/or parquet, found "${f}"`);
    const { benchLoader } = await import('../loader/bench.js');
    const cases = await benchLoader({
      dir: args.shards,
      workers: args.workers,
      batchSize: args['batch-size'],
      formats: formats as ('arrow' | 'parquet')[],
      windowShards: args['window-shards'],
      prefetchBytes: args['prefetch-mb'] * 1024 * 1024,
      verify: args.verify === 'both' ? 'both' : args.verify === 'true',
      reps: args.reps,
      log: args.json ? (line) => process.stderr.write(`${line}\n`) : (line) => process.stdout.write(`${line}\n`),
    });
    const time = new Date().toISOString();
    const lines = cases.map((c) => JSON.stringify({ ...c, time, dataset: args.shards }));
    if (args.json) process.stdout.write(`${lines.join('\n')}\n`);
    if (args.results) await appendFile(args.results, `${lines.join('\n')}\n`);
  },
};

export const command: CommandModule = {
  command: 'bench <stage>',
  describe: 'Benchmark a stage against its ceiling (loader)',
  builder: (y: Argv) =>
    y
      .command(loader as unknown as CommandModule)
      .demandCommand(1, 'Name a stage: rpv bench loader <shards>')
      .example('rpv bench loader shards/demo', 'Loader throughput beside the raw-read ceiling'),
  handler: () => undefined,
};
