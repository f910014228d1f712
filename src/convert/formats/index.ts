/**
 * The registry of input formats. `rpv convert` auto-detects by asking each format's `detect` in
 * this order (the first that says yes wins); `--input-format <name>` picks one directly.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../../util/errors.js';
import type { InputFormat, InputFormatName } from '../record.js';
import { rpvFormat } from './rpv.js';
import { internvlFormat } from './internvl.js';
import { sharegptFormat } from './sharegpt.js';
import { mmroleFormat } from './mmrole.js';
import { chatharuhiFormat } from './chatharuhi.js';
import { rolebenchFormat } from './rolebench.js';

/** Every known format, in detection order. Importers of public datasets are listed after these. */
export const INPUT_FORMATS: InputFormat[] = [
  rpvFormat,
  // MMRole-Data also has `conversations`, so internvl's detect accepts it: ask the stricter mmrole first.
  mmroleFormat,
  internvlFormat,
  sharegptFormat,
  chatharuhiFormat,
  rolebenchFormat,
];

/** The format named `name`; throws listing the known names. */
export function getInputFormat(name: string): InputFormat {
  const format = INPUT_FORMATS.find((f) => f.name === name);
  if (!format) throw new RpvError(`convert: unknown --input-format "${name}"; known: ${INPUT_FORMATS.map((f) => f.name).join(', ')}`);
  return format;
}

/** The first format whose `detect` accepts `input`; throws with what was tried. */
export async function detectInputFormat(input: string): Promise<InputFormat> {
  const stat = await fs.stat(input).catch(() => null);
  if (!stat) throw new RpvError(`convert: input ${input} does not exist`);
  for (const format of INPUT_FORMATS) {
    if (await format.detect(input)) return format;
  }
  throw new RpvError(
    `convert: cannot tell the format of ${input}: none of ${INPUT_FORMATS.map((f) => f.name).join(', ')} matched; pass --input-format (` +
      INPUT_FORMATS.map((f) => `${f.name}: ${f.description}`).join('; ') +
      ')',
  );
}

/** The folder media paths are relative to: the input folder, or the folder of an input file. */
export async function inputRoot(input: string): Promise<string> {
  const stat = await fs.stat(input);
  return path.resolve(stat.isDirectory() ? input : path.dirname(input));
}

export type { InputFormat, InputFormatName };
