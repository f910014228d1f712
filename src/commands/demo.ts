import type { CommandModule } from 'yargs';

interface DemoArgs {
  dir: string;
  steps?: number;
  fresh?: boolean;
  progress: boolean;
}

export const command: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe:
    'The whole job on the bundled sample: sample export -> shards -> loader benchmark -> tiny model -> train with and without video -> held-out losses',
  builder: (y) =>
    y
      .option('dir', { type: 'string', default: 'runs/demo-data', describe: 'Folder for the export, shards and tiny model (runs go to runs/demo*)' })
      .option('steps', { type: 'number', describe: "Optimizer steps of each run (default: the recipes' train.max_steps)" })
      .option('fresh', { type: 'boolean', describe: 'Redo the export, shards and model even if present' })
      .option('progress', { type: 'boolean', default: true, describe: 'Draw progress bars on stderr' })
      .example('$0 demo', 'About 5-10 minutes on 2 cores; prints both held-out losses')
      .example('$0 demo --steps 40', 'A quick look (too short for video to show its value)'),
  handler: async (args) => {
    const { runDemo } = await import('../demo/demo.js');
    // The verdict (video helps or not) is printed; either way the demo itself ran fine: exit 0.
    await runDemo({ dir: args.dir, steps: args.steps, fresh: args.fresh ?? false, progress: args.progress });
  },
};
