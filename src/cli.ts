#!/usr/bin/env node
/**
 * The `rpv` command line: a thin layer over the library. Each command lives in
 * `src/commands/<name>.ts` and imports heavy modules (tfjs, arrow) inside its handler, so
 * `rpv --help` stays fast. Errors are caught once, here.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { RpvError, errorMessage } from './util/errors.js';
import { commands } from './commands/index.js';

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  let exitCode = 0;
  const parser = yargs(argv)
    .scriptName('rpv')
    .usage('rpv <command> [options]\n\nTrain role-playing agents on video: convert exports to shards, stream them, tune adapters.')
    .option('verbose', { type: 'boolean', describe: 'Print stack traces with errors', global: true })
    .strict()
    .demandCommand(1, 'Name a command; `rpv --help` lists them.')
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw err ?? new RpvError(msg, { exitCode: 1 });
    })
    .middleware((args) => {
      // Handlers set process.exitCode for non-error outcomes (e.g. 2: nothing converted).
      void args;
    });
  for (const command of commands) parser.command(command);
  try {
    await parser.parseAsync();
    exitCode = typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const known = err instanceof RpvError;
    process.stderr.write(`rpv: ${errorMessage(err)}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    else if (!known) process.stderr.write('(run with --verbose for the stack trace)\n');
    exitCode = known ? err.exitCode : 1;
  }
  return exitCode;
}

const code = await main(hideBin(process.argv));
process.exitCode = code;
