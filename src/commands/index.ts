import type { CommandModule } from 'yargs';
import { command as demo } from './demo.js';
import { command as env } from './env.js';
import { command as sampleExport } from './sample-export.js';
import { command as convert } from './convert.js';
import { command as inspect } from './inspect.js';
import { command as merge } from './merge.js';
import { command as bench } from './bench.js';
import { command as makeTinyModel } from './make-tiny-model.js';
import { command as score } from './score.js';
import { command as mergeLora } from './merge-lora.js';
import { command as train } from './train.js';
import { command as generate } from './generate.js';
import { command as plot } from './plot.js';
import { command as evaluate } from './eval.js';
import { command as rate } from './rate.js';

/** Every `rpv` command, in the order `rpv --help` lists them (the pipeline's order). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  demo,
  env,
  sampleExport,
  convert,
  inspect,
  merge,
  bench,
  makeTinyModel,
  score,
  mergeLora,
  train,
  generate,
  plot,
  evaluate,
  rate,
];
