import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShard } from '../../src/shard/read.js';
import { parseRecipe } from '../../src/train/recipe.js';
import { train } from '../../src/train/trainer.js';
import { readMetrics } from '../../src/train/metrics.js';
import { isHeldOut } from '../../src/train/dataset.js';
import { evaluateHeldOut } from '../../src/eval/heldout.js';
import { JudgeClient, judgeSamples } from '../../src/index.js';
import { VIDEO2ROLEPLAY_METRICS } from '../../src/eval/index.js';
// The training tests' fixtures: a colour-coded shard dataset and a tiny model.
import { recipeText, writeDataset, writeModel } from '../train/helpers.js';
import { LOCAL_ADVICE, replaceShardText } from '../loader/helpers.js';
import { startFakeJudge, type FakeJudge } from './judge-server.js';

const repo = path.resolve(import.meta.dirname, '../..');
let tmp: string;
let run: string;
let shards: string;
let judge: FakeJudge;
let model: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-heldout-'));
  shards = await writeDataset(path.join(tmp, 'shards'));
  model = await writeModel(path.join(tmp, 'model'));
  run = path.join(tmp, 'run');
  await train(parseRecipe(recipeText(run, shards, model)), { log: () => {} });
  judge = await startFakeJudge();
});
afterAll(async () => {
  await judge?.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('held-out evaluation of a trained run', () => {
  it("scores loss and perplexity exactly as the trainer's held-out evaluation, and generates the role's replies", async () => {
    const result = await evaluateHeldOut({ run, maxNewTokens: 4 });
    const metrics = await readMetrics(path.join(run, 'metrics.jsonl'));
    const last = metrics.filter((m) => m.type === 'eval').at(-1) as { step: number; loss: number; perplexity: number; tokens: number; samples: number };
    expect(last.step).toBe(6);
    expect(result.checkpoint).toMatch(/step-000006$/);
    expect(result.perplexity).toMatchObject({ tokens: last.tokens, samples: last.samples, skipped: {} });
    expect(result.perplexity!.loss).toBe(last.loss);
    expect(result.perplexity!.perplexity).toBe(last.perplexity);

    // One sample per held-out dialogue; the ground truth is the dialogue's last role turn.
    const rows = (await Promise.all((await fs.readdir(shards)).filter((f) => f.endsWith('.arrow')).map((f) => readShard(path.join(shards, f))))).flat();
    const heldRows = rows.filter((r) => isHeldOut(r.video_id, 0.25, 7));
    expect(result.heldOutDialogues).toBe(heldRows.reduce((n, r) => n + r.dialogues.length, 0));
    expect(result.samples).toHaveLength(result.heldOutDialogues);
    for (const s of result.samples) {
      const [videoId, dialogueId] = s.id.split('/');
      const row = heldRows.find((r) => r.video_id === videoId)!;
      const turns = row.dialogues.find((d) => d.dialogue_id === dialogueId)!.turns;
      expect(s.reference).toBe(turns.filter((t) => t.speaker === row.role).at(-1)!.text);
      expect(s.role).toBe(row.role);
      expect(s.question).toContain(row.summary!);
      expect(s.answer === null || typeof s.answer === 'string').toBe(true);
    }

    // The generated answers go straight to the judge; empty ones are reported as unjudged.
    const judged = await judgeSamples(result.samples, {
      metricSet: VIDEO2ROLEPLAY_METRICS,
      client: new JudgeClient({ baseUrl: judge.url, model: 'fake-judge', apiKey: null }),
    });
    expect(judged.counts.judged + judged.summary.unreviewed.length).toBe(result.samples.length);
    expect(judged.counts.failed).toBe(0);
  });

  it('rpv eval --run generates, judges and reports perplexity through the CLI', async () => {
    const out = path.join(tmp, 'eval-cli');
    // Exit 2 when a generated reply is empty (a failure of the model, listed in emptyAnswers).
    const { stdout, code } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'eval', '--run', run, '--limit', '3', '--max-new-tokens', '3', '--base-url', judge.url, '--model', 'fake-judge', '--out', out, '--json'],
      { cwd: repo },
    ).then(
      (r) => ({ ...r, code: 0 }),
      (err: { stdout: string; code: number }) => ({ stdout: err.stdout, code: err.code }),
    );
    const report = JSON.parse(stdout);
    expect(code).toBe(report.emptyAnswers.length > 0 ? 2 : 0);
    expect(report.emptyAnswers).toEqual(report.summary.unreviewed.map((u: { id: string }) => u.id));
    // Judge-free scores beside the judge's, per role and overall.
    expect(report.reference.overall.samples).toBe(3);
    expect(report.reference.overall.rougeL).toBeGreaterThanOrEqual(0);
    expect(report.run.checkpoint).toMatch(/step-000006$/);
    expect(report.perplexity.samples).toBe(3);
    expect(report.counts.samples).toBe(3);
    expect(report.counts.judged + report.summary.unreviewed.length).toBe(3);
    const answers = JSON.parse(await fs.readFile(path.join(out, 'answers.json'), 'utf8'));
    expect(answers).toHaveLength(3);
    expect(JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8')).perplexity).toEqual(report.perplexity);
  });

  it("rpv eval --run reports the held-out loss of the final checkpoint that training logged last, to the bit", async () => {
    const out = path.join(tmp, 'eval-ppl');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'src/cli.ts'), 'eval', '--run', run, '--no-generate', '--out', out, '--json'],
      { cwd: repo },
    );
    const report = JSON.parse(stdout);
    const last = (await readMetrics(path.join(run, 'metrics.jsonl'))).filter((m) => m.type === 'eval').at(-1) as { step: number; loss: number; perplexity: number; tokens: number; samples: number };
    expect(report.run.checkpoint).toMatch(new RegExp(`step-${String(last.step).padStart(6, '0')}$`));
    expect(report.perplexity).toEqual({ loss: last.loss, perplexity: last.perplexity, tokens: last.tokens, samples: last.samples, skipped: {} });
  });

  describe("shard bytes are checked as the run's own data.verify says", () => {
    // Dialogue text changed in a copy of the dataset: it still decodes, but differs from index.json.
    let altered: string;
    let part: string;
    beforeAll(async () => {
      altered = await writeDataset(path.join(tmp, 'altered'), { blockBytes: 700 });
      part = await replaceShardText(altered, 'shard-00000.arrow', 'It is red.', 'It is bed.');
    });

    it('data.verify=true (the default): the scan stops, naming the file and the block', async () => {
      expect(part).toMatch(/^block \d of \d /);
      await expect(evaluateHeldOut({ run, shards: altered, generate: false })).rejects.toThrow(
        `eval: shard ${path.join(altered, 'shard-00000.arrow')}: ${part}: sha256 mismatch: ${LOCAL_ADVICE}`,
      );
    });

    it('a run trained with data.verify=false reads them as they are, in its scan and its loader', async () => {
      const unverified = path.join(tmp, 'run-unverified');
      const overrides = ['data.verify=false', 'train.max_steps=1', 'eval.every_steps=0', 'train.projector_warmup_steps=0'];
      await train(parseRecipe(recipeText(unverified, shards, model), overrides, 'u.yaml'), { progressStream: null, log: () => {} });
      const result = await evaluateHeldOut({ run: unverified, shards: altered, generate: false });
      expect(result.heldOutDialogues).toBeGreaterThan(0);
      expect(result.perplexity!.samples).toBe(result.heldOutDialogues);
    });
  });

  it('limits the dialogues and can skip generation', async () => {
    const result = await evaluateHeldOut({ run, limit: 2, generate: false });
    expect(result.samples).toEqual([]);
    expect(result.perplexity!.samples).toBe(2);
  });
});
