import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

interface TrainArgs {
  recipe?: string;
  resume?: string;
  overrides?: string[];
  'dry-run'?: boolean;
  progress?: boolean;
}

export const command: CommandModule<object, TrainArgs> = {
  command: 'train [recipe] [overrides..]',
  describe: "Tune a LoRA adapter and video projector from a recipe (key=value overrides); --resume <run> continues a run with its own recipe",
  builder: (y) =>
    y
      .positional('recipe', { type: 'string', describe: 'Recipe YAML (see recipes/); not needed with --resume' })
      .positional('overrides', { type: 'string', array: true, describe: 'Dotted key=value overrides, e.g. optimizer.lr=1e-4' })
      .option('dry-run', { type: 'boolean', describe: 'Print the resolved recipe, backend, dataset counts and one rendered sample with its loss mask, then exit' })
      .option('resume', { type: 'string', describe: "A run (or checkpoint) folder: continue it with its own recipe.yaml (overrides apply on top); same as resume=<run>" })
      .option('progress', { type: 'boolean', default: true, describe: 'Draw the progress bar on stderr; --progress=false prints one line per logged step instead (train.log_every_steps)' })
      .example('$0 train recipes/demo.yaml', 'Train the demo recipe')
      .example('$0 train recipes/demo.yaml train.max_steps=50 optimizer.lr=1e-3', 'Override recipe values')
      .example('$0 train --resume runs/demo', "Continue a run from its latest checkpoint, with the run's own recipe")
      .example('$0 train --resume runs/demo train.max_steps=2400', 'Continue it and train longer')
      .example('$0 train recipes/demo.yaml --dry-run', 'Show what would be trained, and which tokens carry the loss'),
  handler: async (args) => {
    const { loadRecipe } = await import('../train/recipe.js');
    const { loadRunRecipe, resumeTarget } = await import('../train/resume-recipe.js');
    let file = args.recipe;
    let overrides = args.overrides ?? [];
    // `rpv train --resume runs/x a.b=1`: the first override lands in the recipe positional.
    if (file !== undefined && file.includes('=') && !file.endsWith('.yaml') && !file.endsWith('.yml')) {
      overrides = [file, ...overrides];
      file = undefined;
    }
    const resume = args.resume ?? resumeTarget(overrides);
    let recipe;
    if (resume !== null) {
      const run = await loadRunRecipe(resume, overrides);
      recipe = run.recipe;
      process.stderr.write(`train: resuming ${resume} with its own recipe ${run.file}${file ? ` (${file} is not read)` : ''}\n`);
    } else {
      if (file === undefined) throw new RpvError('train: name a recipe (rpv train recipes/demo.yaml) or a run to continue (--resume runs/demo)');
      recipe = await loadRecipe(file, overrides, { checkPlaceholders: true });
    }
    if (args['dry-run']) {
      const { dryRun } = await import('../train/dry-run.js');
      process.stdout.write(await dryRun(recipe));
      return;
    }
    const { train } = await import('../train/trainer.js');
    // First SIGINT/SIGTERM: stop after this step with a checkpoint (at once when waiting for
    // data); a second one exits at once.
    const stop = new AbortController();
    const onSignal = () => {
      if (stop.signal.aborted) process.exit(130);
      process.stderr.write('\ninterrupt: finishing this step, saving a checkpoint, then exiting (Ctrl-C again to quit now)\n');
      stop.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const result = await train(recipe, { signal: stop.signal, progressStream: args.progress ? process.stderr : null, logSteps: !args.progress });
      const ev = result.lastEval;
      process.stdout.write(
        `${result.stopped ? 'stopped' : 'finished'} at step ${result.steps}/${result.totalSteps}` +
          (ev ? `; held-out loss ${ev.loss.toFixed(4)} (ppl ${ev.perplexity.toFixed(2)})${ev.focus_loss !== null ? `, focus-word loss ${ev.focus_loss.toFixed(4)}` : ''}` : '') +
          `${result.checkpoint ? `; checkpoint ${result.checkpoint}` : ''}\n`,
      );
      // Exit now: a read abandoned by the stop (a stalled download) must not keep the process up.
      if (result.stopped) process.exit(130);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
