// rpv train --progress=false: without the bar, each logged step is one line on stderr.
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { command } from '../../src/commands/train.js';
import { readMetrics } from '../../src/train/metrics.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-step-lines-'));
afterAll(() => fs.rm(root, { recursive: true, force: true }));

describe('rpv train --progress=false', () => {
  it('prints one line per logged step (train.log_every_steps)', async () => {
    const shards = await writeDataset(path.join(root, 'shards'));
    const model = await writeModel(path.join(root, 'model'));
    const run = path.join(root, 'run');
    const recipe = path.join(root, 'recipe.yaml');
    await fs.writeFile(recipe, recipeText(run, shards, model));
    let stderr = '';
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((t) => ((stderr += String(t)), true));
    try {
      const overrides = ['train.max_steps=4', 'train.log_every_steps=2', 'eval.every_steps=0', 'checkpoint.every_steps=0'];
      await (command.handler as (a: unknown) => Promise<void>)({ _: [], $0: 'rpv', recipe, overrides, progress: false });
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
    const steps = (await readMetrics(path.join(run, 'metrics.jsonl'))).filter((m) => m.type === 'train') as {
      step: number; stage: string; loss: number; lr: number; grad_norm: number; tokens_per_sec: number; loader_wait_sec: number;
    }[];
    expect(steps.map((m) => m.step)).toEqual([2, 4]);
    const lines = stderr.split('\n').filter((l) => l.startsWith('step '));
    expect(lines).toEqual(
      steps.map(
        (m) =>
          `step ${m.step}/4 ${m.stage}: loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} grad_norm ${m.grad_norm.toFixed(3)} ` +
          `tok/s ${Math.round(m.tokens_per_sec)} wait ${m.loader_wait_sec.toFixed(2)}s`,
      ),
    );
    // No bar drawn.
    expect(stderr).not.toContain('train  [');
  });
});
