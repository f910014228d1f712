import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';
/** Exit status 128 + the signal's number, as a shell reports a process the signal ended. */
const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
/** How often the trainer checks that the process that started it still runs. */
const PARENT_POLL_MS = 500;

/** What a second signal says: whether the finished steps are in a checkpoint. */
export function secondSignalMessage(finishedStep: number, last: { dir: string; step: number } | null): string {
  const head = 'interrupt: second signal, exiting now;';
  if (last && last.step >= finishedStep) return `${head} checkpoint ${last.dir} holds the last finished step (${last.step})`;
  if (last) return `${head} no checkpoint of step ${finishedStep} was written, the last is ${last.dir} (step ${last.step})`;
  return `${head} no checkpoint was written (${finishedStep === 0 ? 'no step had finished' : `${finishedStep} step${finishedStep === 1 ? '' : 's'} finished`})`;
}

interface TrainArgs {
  recipe?: string;
  resume?: string;
  overrides?: string[];
  'dry-run'?: boolean;
  progress?: boolean;
  nproc?: number;
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
      .option('nproc', { type: 'number', describe: 'Start N local ranks of data-parallel training (as torchrun --nproc_per_node N; needs Gloo: see `rpv env`)' })
      .option('progress', { type: 'boolean', default: true, describe: 'Draw the progress bar on stderr; --progress=false prints one line per logged step instead (train.log_every_steps)' })
      .example('$0 train recipes/demo.yaml', 'Train the demo recipe')
      .example('$0 train recipes/demo.yaml train.max_steps=50 optimizer.lr=1e-3', 'Override recipe values')
      .example('$0 train --resume runs/demo', "Continue a run from its latest checkpoint, with the run's own recipe")
      .example('$0 train --resume runs/demo train.max_steps=2400', 'Continue it and train longer')
      .example('$0 train recipes/demo.yaml --nproc 2', 'Two local ranks, the CPUs split between them')
      .example('$0 train recipes/demo.yaml --dry-run', 'Show what would be trained, and which tokens carry the loss'),
  handler: async (args) => {
    const { loadRecipe, shippedRecipeFile } = await import('../train/recipe.js');
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
      const read = shippedRecipeFile(file);
      if (read !== file) process.stderr.write(`train: ${file} is not in this folder: reading rpv's shipped ${read}\n`);
      recipe = await loadRecipe(read, overrides, { checkPlaceholders: true });
    }
    if (args.nproc !== undefined && args.nproc > 1 && !args['dry-run']) {
      const { launchLocalRanks, loadCollective } = await import('../train/distributed.js');
      if (!Number.isInteger(args.nproc)) throw new RpvError(`train: --nproc ${args.nproc}: expected a whole number of ranks`);
      if (process.env.WORLD_SIZE) throw new RpvError(`train: --nproc ${args.nproc} with WORLD_SIZE=${process.env.WORLD_SIZE} set: the ranks are already launched; drop --nproc`);
      const { addon, reason } = loadCollective();
      if (!addon) throw new RpvError(`train: --nproc ${args.nproc}: the distributed route is not available: ${reason}`);
      process.exitCode = await launchLocalRanks(args.nproc, process.argv.slice(1));
      return;
    }
    if (args['dry-run']) {
      const { dryRun } = await import('../train/dry-run.js');
      process.stdout.write(await dryRun(recipe));
      return;
    }
    const { train } = await import('../train/trainer.js');
    // First SIGINT/SIGTERM/SIGHUP (a closed terminal): stop after this step with a checkpoint (at
    // once when waiting for data), then exit 128 + the signal's number; a second one exits at
    // once, saying whether the finished steps are in a checkpoint.
    const stop = new AbortController();
    let first: StopSignal | null = null;
    let finishedStep = 0;
    let lastCheckpoint: { dir: string; step: number } | null = null;
    let parentGone = false;
    const onSignal = (signal: StopSignal) => {
      if (stop.signal.aborted) {
        process.stderr.write(`\n${secondSignalMessage(finishedStep, lastCheckpoint)}\n`);
        process.exit(128 + SIGNAL_NUMBERS[signal]);
      }
      first = signal;
      // After a hang-up the terminal may be gone: a failed write must not end the run before its
      // checkpoint.
      if (signal === 'SIGHUP') for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
      process.stderr.write('\ninterrupt: finishing this step, saving a checkpoint, then exiting (Ctrl-C again to quit now)\n');
      stop.abort();
    };
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((signal) => [signal, () => onSignal(signal)] as const);
    for (const [signal, handler] of handlers) process.on(signal, handler);
    // A trainer whose parent dies (SIGTERM to an `npx` wrapper, a closed ssh session's shell) is
    // re-parented: it stops as on SIGTERM instead of training on, orphaned.
    const parent = process.ppid;
    const watch = setInterval(() => {
      if (process.ppid === parent || parentGone) return;
      parentGone = true;
      clearInterval(watch);
      // Output may have gone to a pipe the parent read: a failed write must not end the run.
      for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
      process.stderr.write(`\ntrain: the parent process ${parent} has exited; stopping as on SIGTERM\n`);
      if (!stop.signal.aborted) onSignal('SIGTERM');
    }, PARENT_POLL_MS);
    watch.unref();
    try {
      const result = await train(recipe, {
        signal: stop.signal,
        progressStream: args.progress ? process.stderr : null,
        logSteps: !args.progress,
        onStep: (m) => (finishedStep = m.step),
        onCheckpoint: (dir, step) => {
          lastCheckpoint = { dir, step };
          finishedStep = Math.max(finishedStep, step);
        },
      });
      const ev = result.lastEval;
      process.stdout.write(
        `${result.stopped ? 'stopped' : 'finished'} at step ${result.steps}/${result.totalSteps}` +
          (ev ? `; held-out loss ${ev.loss.toFixed(4)} (ppl ${ev.perplexity.toFixed(2)})${ev.focus_loss !== null ? `, focus-word loss ${ev.focus_loss.toFixed(4)}` : ''}` : '') +
          `${result.checkpoint ? `; checkpoint ${result.checkpoint}` : ''}` +
          `${result.updatesSkipped ? `; ${result.updatesSkipped} update${result.updatesSkipped === 1 ? '' : 's'} skipped (non-finite loss or gradient norm)` : ''}\n`,
      );
      // Exit now: a read abandoned by the stop (a stalled download) must not keep the process up.
      if (result.stopped) process.exit(128 + SIGNAL_NUMBERS[first ?? 'SIGINT']);
    } finally {
      clearInterval(watch);
      for (const [signal, handler] of handlers) process.off(signal, handler);
    }
  },
};
