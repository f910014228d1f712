// The demo's showcase measure: how often each run's replies to held-out questions name the clip's
// colour/direction, instead of one reply on one clip.
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatVisualAnswers, namedWords, namesRightWords, scoreVisualAnswers } from '../../src/demo/showcase.js';
import { parseRecipe, train } from '../../src/index.js';
import { isHeldOut } from '../../src/train/dataset.js';
import { readShard } from '../../src/shard/read.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { flipShardByte, LOCAL_ADVICE } from '../loader/helpers.js';
import { recipeText, writeDataset, writeModel } from '../train/helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-showcase-'));
afterAll(() => fs.rm(root, { recursive: true, force: true }));
const words = ['red', 'green', 'blue', 'yellow', 'left', 'right', '红色', '向左'];

describe('naming the right words', () => {
  it('finds Latin words whole and Chinese words inside text', () => {
    expect(namedWords('It is Red, moving left!', words)).toEqual(['red', 'left']);
    expect(namedWords('I am bored; alright', words)).toEqual([]);
    expect(namedWords('是红色的，一直向左跑', words)).toEqual(['红色', '向左']);
  });
  it('is right only with exactly the reference words', () => {
    expect(namesRightWords('It is yellow, unmistakably.', 'It is yellow, unmistakably. 🧐', words)).toBe(true);
    expect(namesRightWords('It is green, unmistakably.', 'It is yellow, unmistakably.', words)).toBe(false);
    // Hedging with a second colour is not right; nor is naming nothing.
    expect(namesRightWords('Yellow or green?', 'It is yellow.', words)).toBe(false);
    expect(namesRightWords('Hmm.', 'It is yellow.', words)).toBe(false);
  });
});

describe('scoreVisualAnswers', () => {
  it('asks every run each held-out question whose reference names a focus word', async () => {
    const shards = await writeDataset(path.join(root, 'shards'));
    const model = await writeModel(path.join(root, 'model'));
    const quiet = { progressStream: null, log: () => {} };
    const video = path.join(root, 'runs', 'demo');
    const text = path.join(root, 'runs', 'demo-text-only');
    await train(parseRecipe(recipeText(video, shards, model), ['train.max_steps=2', 'eval.every_steps=0'], 'v.yaml'), quiet);
    await train(parseRecipe(recipeText(text, shards, model), ['train.max_steps=2', 'eval.every_steps=0', 'data.use_video=false', 'train.projector_warmup_steps=0'], 't.yaml'), quiet);

    // The questions counted from the shards directly (the fixture's recipe: seed 7, a quarter held out).
    let expected = 0;
    const clips = new Set<string>();
    const index = await readShardIndex(shards);
    for (const shard of index.shards.filter((s) => s.format === 'arrow')) {
      for (const row of await readShard(path.join(shards, shard.file))) {
        if (!isHeldOut(row.video_id, 0.25, 7) || row.num_frames === 0) continue;
        for (const d of row.dialogues) {
          if (d.turns[0]!.speaker !== row.role && d.turns[1]?.speaker === row.role && /red|green|blue|yellow/.test(d.turns[1].text)) {
            expected++;
            clips.add(row.video_id);
          }
        }
      }
    }
    expect(expected).toBeGreaterThan(0);
    const score = await scoreVisualAnswers(shards, [video, text], { maxNewTokens: 4 });
    expect(score.questions).toBe(expected);
    expect(score.clips).toBe(clips.size);
    expect(Object.keys(score.right)).toEqual(['demo', 'demo-text-only']);
    for (const n of Object.values(score.right)) expect(Number.isInteger(n) && n >= 0 && n <= expected).toBe(true);
    const lines = formatVisualAnswers(score);
    expect(lines[0]).toBe(`  naming the clip's colour/direction on ${expected} held-out questions (${clips.size} clips; greedy replies):`);
    expect(lines[1]).toBe(`    demo            ${String(score.right.demo).padStart(4)}/${expected} right (${((100 * score.right.demo!) / expected).toFixed(0)}%)`);
  });
});

describe('the showcase reads checked shard bytes', () => {
  it('a flipped byte in a shard stops it, naming the file and the block as the loader does', async () => {
    const shards = await writeDataset(path.join(root, 'checked'), { blockBytes: 700 });
    const model = await writeModel(path.join(root, 'checked-model'));
    const run = path.join(root, 'runs', 'checked');
    await train(parseRecipe(recipeText(run, shards, model), ['train.max_steps=1', 'eval.every_steps=0', 'train.projector_warmup_steps=0'], 'c.yaml'), { progressStream: null, log: () => {} });
    const part = await flipShardByte(shards, 'shard-00001.arrow');
    expect(part).toMatch(/^block \d of \d /);
    await expect(scoreVisualAnswers(shards, [run], { maxNewTokens: 2 })).rejects.toThrow(
      `demo: shard ${path.join(shards, 'shard-00001.arrow')}: ${part}: sha256 mismatch: ${LOCAL_ADVICE}`,
    );
  });
});
