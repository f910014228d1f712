/**
 * The registry of input formats. `rpv convert` auto-detects by asking each format's `detect` in
 * this order (the first that says yes wins); `--input-format <name>` picks one directly.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../../util/errors.js';
import type { InputFormat, InputFormatName, ParsedItem, ReadOptions } from '../record.js';
import { firstRecord } from './json-input.js';
import { parseJsonItems, rpvFormat } from './rpv.js';
import { chatInputFiles, internvlFormat, parseInternvlRecord } from './internvl.js';
import { parseSharegptRecord, sharegptFormat } from './sharegpt.js';
import { mmroleFormat } from './mmrole.js';
import { chatharuhiFormat } from './chatharuhi.js';
import { rolebenchFormat } from './rolebench.js';

/**
 * The layout of one chat JSON file from its first record: ShareGPT (`messages`, or
 * `conversations` with `videos`), InternVL (`conversations`), or null when it is neither.
 */
export async function chatFileLayout(file: string): Promise<'sharegpt' | 'internvl' | null> {
  const first = await firstRecord(file);
  if (first === null) return null;
  if (Array.isArray(first.messages) || (Array.isArray(first.conversations) && 'videos' in first)) return 'sharegpt';
  if (Array.isArray(first.conversations)) return 'internvl';
  return null;
}

/**
 * InternVL and ShareGPT files side by side in one folder (a LLaMA-Factory export beside an
 * InternVL one): each file is read in its own layout, told from its first record; a file that is
 * neither is read as the folder's detected format, whose reasons then name what is missing.
 */
async function* readChatFiles(input: string, options: ReadOptions, folderLayout: 'sharegpt' | 'internvl'): AsyncGenerator<ParsedItem> {
  const { root, defaultRole } = options;
  for (const file of await chatInputFiles(input)) {
    const layout = (await chatFileLayout(file)) ?? folderLayout;
    yield* parseJsonItems(file, root, (v, f, l) => (layout === 'sharegpt' ? parseSharegptRecord(v, f, l, defaultRole) : parseInternvlRecord(v, f, l, defaultRole)));
  }
}

const perFile = (format: InputFormat, layout: 'sharegpt' | 'internvl'): InputFormat => ({ ...format, read: (input, options) => readChatFiles(input, options, layout) });

/** Every known format, in detection order. Importers of public datasets are listed after these. */
export const INPUT_FORMATS: InputFormat[] = [
  rpvFormat,
  // MMRole-Data also has `conversations`, so internvl's detect accepts it: ask the stricter mmrole first.
  mmroleFormat,
  perFile(internvlFormat, 'internvl'),
  perFile(sharegptFormat, 'sharegpt'),
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
