// Recipe checks a new user meets on the real-scale recipe: its placeholder paths, a projector-only
// stage as long as the run, and resuming a run with its own recipe.
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { command } from '../../src/commands/train.js';
import { loadRecipe, parseRecipe } from '../../src/train/recipe.js';
import { openSession } from '../../src/train/trainer.js';
import { readMetrics } from '../../src/train/metrics.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const repo = path.resolve(import.meta.dirname, '../..');
const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-recipe-checks-'));
let shards: string;
let model: string;
beforeAll(async () => {
  shards = await writeDataset(path.join(root, 'shards'));
  model = await writeModel(path.join(root, 'model'));
});
afterAll(() => fs.rm(root, { recursive: true, force: true }));

/** The train command's handler in-process; stdout and stderr captured. */
async function trainCli(args: Record<string, unknown>): Promise<{ stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((t) => ((stdout += String(t)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((t) => ((stderr += String(t)), true));
  try {
    await (command.handler as (a: unknown) => Promise<void>)({ _: [], $0: 'rpv', progress: false, ...args });
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return { stdout, stderr };
}

describe('recipe checks', () => {
  it("names the recipe's placeholder paths that are left as they are", async () => {
    const file = path.join(repo, 'recipes', 'qwen2.5-0.5b-video60k.yaml');
    await expect(loadRecipe(file, [], { checkPlaceholders: true })).rejects.toThrow(
      `${file}: 2 errors:\n` +
        "  model.path: /models/Qwen2.5-0.5B-Instruct (the recipe's placeholder path) does not exist; pass model.path=<local HF folder of the base model>\n" +
        "  data.shards: /data/video60k-shards (the recipe's placeholder path) does not exist; pass data.shards=<rpv shard folder or index.json URL>",
    );
    // Overridden, a path is the user's: a missing one is reported where it is opened, not as a placeholder.
    await expect(loadRecipe(file, [`model.path=${model}`], { checkPlaceholders: true })).rejects.toThrow(
      `${file}: 1 error:\n  data.shards: /data/video60k-shards (the recipe's placeholder path) does not exist; pass data.shards=<rpv shard folder or index.json URL>`,
    );
    expect((await loadRecipe(file, [`model.path=${model}`, `data.shards=${shards}`], { checkPlaceholders: true })).data.shards).toBe(shards);
    // Without the check (the library, tests) the recipe loads as before.
    expect((await loadRecipe(file)).model.path).toBe('/models/Qwen2.5-0.5B-Instruct');
  });

  it('refuses a projector-only stage as long as a run sized by epochs, naming both keys', async () => {
    const recipe = parseRecipe(recipeText(path.join(root, 'warm'), shards, model), ['train.max_steps=null', 'train.projector_warmup_steps=200'], 'test.yaml');
    await expect(openSession(recipe, () => {})).rejects.toThrow(
      "train: train.projector_warmup_steps 200 is not below the run's 4 optimizer steps (train.max_steps unset: train.epochs 1 x 4 steps per epoch), " +
        'so LoRA would never train; lower train.projector_warmup_steps, or set train.max_steps above it',
    );
    // With max_steps set, the recipe itself is refused (both keys named).
    expect(() => parseRecipe(recipeText(path.join(root, 'warm'), shards, model), ['train.max_steps=2', 'train.projector_warmup_steps=2'], 'test.yaml')).toThrow(
      'test.yaml: 1 error:\n  train.projector_warmup_steps: expected fewer than train.max_steps (2), found 2',
    );
  });

  it("--resume (or resume= beside any recipe) continues with the run's own recipe", async () => {
    const run = path.join(root, 'run');
    const first = path.join(root, 'first.yaml');
    await fs.writeFile(first, recipeText(run, shards, model));
    await trainCli({ recipe: first, overrides: ['train.max_steps=2', 'optimizer.lr=0.005', 'eval.every_steps=0'] });
    // Another recipe (the demo's, whose paths do not exist here) beside resume=: the run's recipe is used.
    const demo = path.join(repo, 'recipes', 'demo.yaml');
    const resumed = await trainCli({ recipe: demo, overrides: [`resume=${run}`, 'train.max_steps=3'] });
    const checkpoint = path.join(run, 'checkpoints', 'step-000002');
    expect(resumed.stderr.split('\n')).toContain(`train: resuming ${run} with its own recipe ${path.join(checkpoint, 'recipe.yaml')} (${demo} is not read)`);
    expect(resumed.stdout).toMatch(/^finished at step 3\/3/);
    // --resume, the first override where yargs puts the recipe.
    const again = await trainCli({ resume: run, recipe: 'train.max_steps=4' });
    expect(again.stdout).toMatch(/^finished at step 4\/4/);
    const saved = await fs.readFile(path.join(run, 'recipe.yaml'), 'utf8');
    expect(saved).toContain('lr: 0.005');
    expect((await readMetrics(path.join(run, 'metrics.jsonl'))).filter((m) => m.type === 'train').map((m) => m.step)).toEqual([1, 2, 3, 4]);
  });
});
