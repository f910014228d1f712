// What rpv generate refuses or warns about before a user reads an empty or wrong reply: a role the
// run was not trained on, a row id that is not in the shards, and token ids the tokenizer lacks.
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { command } from '../../src/commands/generate.js';
import { parseRecipe, train } from '../../src/index.js';
import { writeTinyModel } from '../../src/model/tiny.js';
import { closeNames, editDistance } from '../../src/infer/shard-lookup.js';
import { flipShardByte, LOCAL_ADVICE } from '../loader/helpers.js';
import { recipeText, writeDataset } from '../train/helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-generate-checks-'));
const run = path.join(root, 'run');
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');

beforeAll(async () => {
  // A model whose vocabulary (2048) outgrows its tokenizer (300 tokens), as the presets' do.
  await writeTinyModel(model, { hiddenSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, vocabSize: 2048, tokenizerVocab: 300, seed: 3 });
  await writeDataset(shards);
  await train(parseRecipe(recipeText(run, shards, model), ['train.max_steps=1', 'train.projector_warmup_steps=0'], 'test.yaml'), { progressStream: null, log: () => {} });
});
afterAll(() => fs.rm(root, { recursive: true, force: true }));

/** The command's handler in-process (a CLI process per case would cost seconds): what it printed, or its error. */
async function generate(options: Record<string, unknown>): Promise<{ error: string | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((t) => ((stdout += String(t)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((t) => ((stderr += String(t)), true));
  try {
    const args = { run, message: 'What colour is it?', 'max-tokens': 6, temperature: 0, 'top-p': 0.9, seed: 0, ...options };
    await (command.handler as (a: unknown) => Promise<void>)({ _: [], $0: 'rpv', ...args });
    return { error: null, stdout, stderr };
  } catch (e) {
    return { error: (e as Error).message, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('rpv generate checks', () => {
  it('finds close names: a folder prefix, a substring, a few edits', () => {
    expect(closeNames('clip03', ['videos/clip03', 'videos/clip30', 'clip-003', 'other/x'])).toEqual(['videos/clip03', 'clip-003', 'videos/clip30']);
    expect(closeNames('Captain Novaa', ['Captain Nova', 'Professor Pixel'])).toEqual(['Captain Nova']);
    expect(closeNames('zzz', ['Captain Nova'])).toEqual([]);
    expect(editDistance('小橘', '小桔')).toBe(1);
  });

  it('refuses a role the run was not trained on, listing the roles', async () => {
    expect((await generate({ row: 'clip-001', role: 'Pixle' })).error).toBe(
      `generate: --role "Pixle" is not a role of ${shards}: did you mean "Pixel"? (roles there: Pixel, 小橘); to play a role the run was not trained on, give its --profile text`,
    );
    // With the new role's profile it plays it.
    expect((await generate({ row: 'clip-001', role: 'Pixle', profile: 'A new guide.', json: true })).error).toBeNull();
  });

  it('refuses an unknown row, listing close ids', async () => {
    expect((await generate({ row: 'clip-01' })).error).toBe(`generate: ${shards}: no row with video_id clip-01; close ids: clip-010, clip-011, clip-001, clip-000, clip-002`);
    expect((await generate({ row: 'nothing-like-it' })).error).toBe(
      `generate: ${shards}: no row with video_id nothing-like-it; ids there: clip-000, clip-001, clip-002, clip-003, clip-004 and 7 more`,
    );
  });

  it('a flipped byte in a shard stops --row, naming the file and the block as the loader does', async () => {
    const bad = await writeDataset(path.join(root, 'flipped'), { blockBytes: 700 });
    const part = await flipShardByte(bad, 'shard-00000.arrow');
    expect(part).toMatch(/^block \d of \d /);
    expect((await generate({ row: 'clip-001', shards: bad })).error).toBe(`generate: shard ${path.join(bad, 'shard-00000.arrow')}: ${part}: sha256 mismatch: ${LOCAL_ADVICE}`);
  });

  it('warns when generated ids are not in the tokenizer', async () => {
    // Sampled, so that the random model's ids spread over its 2048.
    const { error, stdout, stderr } = await generate({ row: 'clip-001', json: true, temperature: 1, 'top-p': 1 });
    expect(error).toBeNull();
    const reply = JSON.parse(stdout) as { tokenIds: number[]; undecodableIds: number[] };
    const missing = reply.tokenIds.filter((id) => id >= 300);
    expect(missing.length).toBeGreaterThan(0);
    expect(reply.undecodableIds).toEqual(missing);
    const first = [...new Set(missing)].slice(0, 5).join(', ');
    expect(stderr.trim().split('\n').at(-1)).toBe(
      `generate: warning: ${missing.length} of ${reply.tokenIds.length} generated token ids (${first}${missing.length > 5 ? ', ...' : ''}) are not in the tokenizer of ${model} (300 tokens; the model's vocabulary has 2048): the reply cannot show them`,
    );
  });
});
