/**
 * Training reads only shard bytes that match the index (data.verify, on by default): a flipped
 * byte or altered dialogue text stops the run naming the shard file and the block; with
 * data.verify=false it reads the files as they are.
 */
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRecipe, train } from '../../src/index.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { LOCAL_ADVICE, makeDataset } from '../loader/helpers.js';
import { recipeText, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-verify-'));
const model = path.join(root, 'model');
const quiet = { progressStream: null, log: () => {} };
const recipeFor = (shards: string, out: string, overrides: string[] = []) =>
  parseRecipe(recipeText(path.join(root, out), shards, model), ['train.max_steps=1', 'train.projector_warmup_steps=0', ...overrides], 'test.yaml');

/** A dataset of 2 shards of 3 blocks each (8-dim features, one token per frame). */
async function dataset(name: string): Promise<string> {
  const dir = path.join(root, name);
  await makeDataset(dir, { shards: 2, rowsPerShard: 6, featureDim: 8, tokensPerFrame: 1, frames: () => 2, blockBytes: 700 });
  return dir;
}

/** `block b of n (bytes a-z)` holding byte `at` of `file` in the dataset at `dir`. */
async function blockAt(dir: string, file: string, at: number): Promise<string> {
  const offsets = (await readShardIndex(dir)).shards.find((s) => s.file === file)!.blockOffsets!;
  const b = offsets.findIndex((o, i) => o <= at && at < offsets[i + 1]!);
  return `block ${b + 1} of ${offsets.length - 1} (bytes ${offsets[b]}-${offsets[b + 1]! - 1})`;
}

beforeAll(async () => {
  await writeModel(model);
});
afterAll(() => fs.rm(root, { recursive: true, force: true }));

describe('training checks the shards it reads', () => {
  it('a flipped byte in a shard stops the run, naming the file and the block', async () => {
    const dir = await dataset('flipped');
    const file = path.join(dir, 'shard-00001.arrow');
    const bytes = await fs.readFile(file);
    const at = bytes.length >> 1;
    bytes[at]! ^= 0xff;
    await fs.writeFile(file, bytes);
    await expect(train(recipeFor(dir, 'out-flipped'), quiet)).rejects.toThrow(
      `train: shard ${file}: ${await blockAt(dir, 'shard-00001.arrow', at)}: sha256 mismatch: ${LOCAL_ADVICE}`,
    );
  });

  it('altered dialogue text stops the run; data.verify=false trains on the file as it is', async () => {
    const dir = await dataset('text');
    const file = path.join(dir, 'shard-00000.arrow');
    const bytes = await fs.readFile(file);
    const at = bytes.indexOf(Buffer.from('reply 4.0'));
    expect(at).toBeGreaterThan(0);
    Buffer.from('reply 9.9').copy(bytes, at);
    await fs.writeFile(file, bytes);
    await expect(train(recipeFor(dir, 'out-text'), quiet)).rejects.toThrow(
      `train: shard ${file}: ${await blockAt(dir, 'shard-00000.arrow', at)}: sha256 mismatch: ${LOCAL_ADVICE}`,
    );
    const recipe = recipeFor(dir, 'out-unverified', ['data.verify=false']);
    expect(recipe.data.verify).toBe(false);
    const result = await train(recipe, quiet);
    expect(result.losses).toHaveLength(1);
    expect(Number.isFinite(result.losses[0])).toBe(true);
  });

  it('data.verify takes true or false', () => {
    expect(recipeFor('x', 'y').data.verify).toBe(true);
    expect(() => recipeFor('x', 'y', ['data.verify=sometimes'])).toThrow('test.yaml: 1 error:\n  data.verify: expected true or false, found string "sometimes"');
  });
});
