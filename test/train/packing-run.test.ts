// Training runs with data.packing: a run stopped mid-epoch resumes to the same packed rows (the
// losses of the uninterrupted run, bit for bit), metrics.jsonl records each step's fill, the
// losses equal those of the padded run on the same samples (dropout off), and --dry-run shows
// the first step's rows.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dryRun, parseRecipe, readMetrics, train, type TrainMetric } from '../../src/index.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-packing-run-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
// The fixtures' samples have about 200 tokens: rows of 512 take two.
const PACKED = ['data.packing=true', 'prompt.max_tokens=512', 'train.max_steps=6', 'eval.every_steps=0'];
const recipeFor = (out: string, overrides: string[] = []) => parseRecipe(recipeText(path.join(root, out), shards, model), overrides, 'test.yaml');
const quiet = { progressStream: null, log: () => {} };
const trainMetrics = async (run: string) => (await readMetrics(path.join(root, run, 'metrics.jsonl'))).filter((m): m is TrainMetric => m.type === 'train');

let straight: number[] = [];

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
  straight = (await train(recipeFor('straight', PACKED), quiet)).losses;
});

describe('packed training runs', () => {
  it('resume mid-epoch to the same rows: the losses of the uninterrupted run', async () => {
    let steps = 0;
    // 27 training dialogues in batches of 4, 2 per step: step 2 ends mid-epoch.
    const first = await train(recipeFor('resumed', PACKED), { ...quiet, shouldStop: () => ++steps >= 2 });
    expect(first.steps).toBe(2);
    const second = await train(recipeFor('resumed', [...PACKED, `resume=${path.join(root, 'resumed')}`]), quiet);
    expect([...first.losses, ...second.losses]).toEqual(straight);
    expect((await trainMetrics('resumed')).map((m) => m.fill)).toEqual((await trainMetrics('straight')).map((m) => m.fill));
  });

  it('records the fill per step, at the losses of the padded run (dropout off)', async () => {
    const packed = await train(recipeFor('packed-nodrop', [...PACKED, 'lora.dropout=0']), quiet);
    const padded = await train(recipeFor('padded-nodrop', ['prompt.max_tokens=512', 'train.max_steps=6', 'eval.every_steps=0', 'lora.dropout=0']), quiet);
    packed.losses.forEach((l, i) => expect(Math.abs(l - padded.losses[i]!) / padded.losses[i]!, `step ${i + 1}`).toBeLessThan(1e-5));
    const p = await trainMetrics('packed-nodrop');
    const q = await trainMetrics('padded-nodrop');
    expect(p.map((m) => m.tokens)).toEqual(q.map((m) => m.tokens));
    for (const m of [...p, ...q]) {
      expect(m.fill).toBeGreaterThan(0.5);
      expect(m.fill).toBeLessThanOrEqual(1);
    }
  });

  it('--dry-run shows the first step packed into rows', async () => {
    const text = await dryRun(recipeFor('dry', PACKED));
    expect(text).toContain('# first step: packed rows (data.packing)');
    // The 6 training samples of 2 loader batches (held-out ones removed) in 3 rows of 2: one micro-batch.
    expect(text).toMatch(/^6 samples in 1 micro-batch\(es\) of 3 rows; fill \d+\.\d% of the computed positions \(padding \d+\.\d%\)$/m);
    expect(text).toMatch(/^micro-batch 1: 3 row\(s\) x \d+ positions$/m);
    expect(text).toMatch(/^ {2}row 1: 2 sample\(s\), \d+ tokens = \d+\.\d% of prompt\.max_tokens \(clip-\d+\/d\d, clip-\d+\/d\d\)$/m);
    const padded = await dryRun(recipeFor('dry-padded', ['train.max_steps=6']));
    expect(padded).toContain('# first step: padded loader batches');
  });

  it('refuses packing and grouping together', () => {
    expect(() => recipeFor('both', ['data.packing=true', 'data.group_by_length=true'])).toThrow(
      'data.group_by_length: expected false when data.packing is true (packed rows are already filled; choose one)',
    );
  });
});
