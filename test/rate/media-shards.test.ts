// The rating page's frames come from shard bytes checked against index.json as they are read: a
// flipped byte stops `rpv rate serve` at start, and a shard damaged while it runs fails the frames
// request, both naming the file and the block as the loader does.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaResolver, type RateItem } from '../../src/rate/index.js';
import { flipShardByte, LOCAL_ADVICE, makeDataset, tempDir } from '../loader/helpers.js';

let dir: string;
let cleanup: () => void;
let good: string;
const quiet = { log: () => {} };

/** An item with no video of its own: the page shows row `videoId`'s frames from the shards. */
const item = (id: string, videoId: string): RateItem => ({
  id,
  role: 'Ada',
  script: null,
  otherRole: null,
  question: 'Colour?',
  profile: null,
  summary: null,
  history: [],
  video: null,
  image: null,
  videoId,
  answers: [],
  mode: 'scores',
  where: 'items.jsonl:1',
});

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('rate-media'));
  good = path.join(dir, 'good');
  // 2 shards of 5 rows, each in 3 blocks, so a flipped byte is named by its block.
  await makeDataset(good, { shards: 2, rowsPerShard: 5, frames: () => 3, blockBytes: 1200 });
});
afterAll(() => cleanup());

async function copyOf(name: string): Promise<string> {
  const out = path.join(dir, name);
  await fs.cp(good, out, { recursive: true });
  return out;
}

describe('rate: frames from checked shard bytes', () => {
  it('a flipped byte in a shard stops the server at start, naming the file and the block', async () => {
    const shards = await copyOf('flipped');
    const part = await flipShardByte(shards, 'shard-00001.arrow');
    expect(part).toMatch(/^block \d of 3 /);
    await expect(MediaResolver.create([item('c1', 'v00002')], { shards, ...quiet })).rejects.toThrow(
      `rate: shard ${path.join(shards, 'shard-00001.arrow')}: ${part}: sha256 mismatch: ${LOCAL_ADVICE}`,
    );
  });

  it('a shard damaged after the start fails the frames request with the same message', async () => {
    const shards = await copyOf('later');
    const media = await MediaResolver.create([item('c1', 'v00007')], { shards, ...quiet });
    expect(media.info(item('c1', 'v00007'))).toEqual({ kind: 'frames' });
    const part = await flipShardByte(shards, 'shard-00001.arrow');
    await expect(media.frames(item('c1', 'v00007'))).rejects.toThrow(`rate: shard ${path.join(shards, 'shard-00001.arrow')}: ${part}: sha256 mismatch: ${LOCAL_ADVICE}`);
  });

  it('intact shards give the row\'s frames', async () => {
    const media = await MediaResolver.create([item('c1', 'v00007')], { shards: good, ...quiet });
    const view = await media.frames(item('c1', 'v00007'));
    expect([view.videoId, view.times]).toEqual(['v00007', [0.75, 2.25, 3.75]]);
  });
});
