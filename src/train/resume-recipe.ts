/**
 * `rpv train --resume <run>` (or `resume=<run>` beside any recipe): a run continues with the recipe
 * it was trained with, the `recipe.yaml` its checkpoint holds (paths, overrides and all), so the
 * placeholder paths or the defaults of the file it started from cannot send it elsewhere.
 * Command-line overrides still apply on top (`train.max_steps=2000` to train longer).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { resolveCheckpoint } from './checkpoint.js';
import { parseRecipe, type Recipe } from './recipe.js';

/** The `resume=` target among overrides, if any. */
export function resumeTarget(overrides: readonly string[]): string | null {
  const found = overrides.filter((o) => o.startsWith('resume='));
  return found.length > 0 ? found[found.length - 1]!.slice('resume='.length) : null;
}

/** The recipe of the run (or checkpoint) `where`, with `overrides` (other than `resume=`) on top. */
export async function loadRunRecipe(where: string, overrides: readonly string[] = []): Promise<{ recipe: Recipe; file: string }> {
  const checkpoint = await resolveCheckpoint(where);
  const file = path.join(checkpoint, 'recipe.yaml');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`train: resume=${where}: cannot read the run's recipe ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const rest = overrides.filter((o) => !o.startsWith('resume='));
  return { recipe: parseRecipe(text, [...rest, `resume=${where}`], file), file };
}
