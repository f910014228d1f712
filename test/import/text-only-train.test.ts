import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { convertExport } from '../../src/convert/convert.js';
import { mergeDatasets } from '../../src/shard/merge.js';
import { parseRecipe } from '../../src/train/recipe.js';
import { train } from '../../src/train/trainer.js';
import { readMetrics } from '../../src/train/metrics.js';
import { writeModel } from '../train/helpers.js';

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-textonly-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

describe('text-only rows from ChatHaruhi and RoleBench', () => {
  it('convert, merge, and train through the same loader and loop, with no video tokens', async () => {
    // rpv convert each dataset, rpv merge them: one text-only dataset of 8 rows.
    for (const name of ['chatharuhi', 'rolebench']) {
      await convertExport({ input: path.join(FIXTURES, name), out: path.join(tmp, name), workers: 1 });
    }
    const shards = path.join(tmp, 'shards');
    const merged = await mergeDatasets({ inputs: [path.join(tmp, 'chatharuhi'), path.join(tmp, 'rolebench')], out: shards, copy: true });
    expect(merged.index.totals).toMatchObject({ rows: 8, frames: 0 });
    const model = await writeModel(path.join(tmp, 'model'));
    const run = path.join(tmp, 'run');
    const recipe = parseRecipe(`# text-only import smoke run
output_dir: ${run}
seed: 3
model: {path: ${model}, backend: wasm}
data: {shards: ${shards}, heldout_fraction: 0.2, batch_size: 2, workers: 0}
prompt: {max_tokens: 512, profile_max_tokens: 32}
lora: {r: 4, alpha: 8, dropout: 0, target_modules: [q, v]}
optimizer: {lr: 0.01}
train: {max_steps: 3, grad_accum_steps: 1, projector_warmup_steps: 0}
eval: {every_steps: 3}
checkpoint: {every_steps: 3, keep_last: 1}
`);
    const result = await train(recipe, { log: () => {} });
    expect(result.steps).toBe(3);
    // Nothing skipped but the held-out split: every text-only dialogue rendered and trained.
    expect(Object.keys(result.skipped).filter((k) => k !== 'held-out')).toEqual([]);
    expect(result.lastEval!.samples).toBeGreaterThan(0);
    expect(Number.isFinite(result.lastEval!.loss)).toBe(true);
    const metrics = await readMetrics(path.join(run, 'metrics.jsonl'));
    const steps = metrics.filter((m) => m.type === 'train') as unknown as { loss: number }[];
    expect(steps).toHaveLength(3);
    for (const s of steps) expect(Number.isFinite(s.loss) && s.loss > 0).toBe(true);
  });
});
