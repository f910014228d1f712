import type { CommandModule } from 'yargs';

interface MergeArgs {
  dirs: string[];
  out: string;
  copy: boolean;
  json: boolean;
}

export const command: CommandModule<object, MergeArgs> = {
  command: 'merge <dirs..>',
  describe: 'Join shard folders (e.g. the parts of rpv convert --part i/N) into one dataset',
  builder: (yargs) =>
    yargs
      .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'Shard folders to join, in order' })
      .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder (empty or new)' })
      .option('copy', { type: 'boolean', default: false, describe: 'Copy shard files instead of hard-linking them' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the merged index as JSON' })
      .example('rpv merge shards/part-0 shards/part-1 --out shards/all', 'Join two parts into one dataset'),
  handler: async (args) => {
    const { mergeDatasets } = await import('../shard/merge.js');
    const summary = await mergeDatasets({ inputs: args.dirs, out: args.out, copy: args.copy });
    const { index } = summary;
    if (args.json) {
      process.stdout.write(`${JSON.stringify(index, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `merged ${args.dirs.length} dataset(s) into ${summary.out}: ${index.totals.rows} rows, ${index.totals.dialogues} dialogues, ` +
        `${index.totals.shards} file(s) (${summary.linked} hard-linked, ${summary.copied} copied); ` +
        `read ${index.counts.read} = converted ${index.counts.converted} + skipped ${index.counts.skipped}\n`,
    );
  },
};
