// Exactly-once resume across a change of ranks, at the level of sample ids: every rank reads the
// global order (the loader at rank 0 of 1, from the checkpoint's global position) and trains its
// share of each step (rankShare). Over an epoch, with a checkpoint taken mid-epoch and resumed on
// another number of ranks, the union of the samples trained by all ranks is each sample once.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLoader, type Batch, type LoaderState } from '../../src/index.js';
import { rankShare } from '../../src/train/data-parallel.js';
import { writeDataset } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-train-dp-'));
const shards = path.join(root, 'shards');
const BATCH = 4;
const GLOBAL = 4; // micro-batches per optimizer step, over all ranks

beforeAll(async () => {
  await writeDataset(shards, { videos: 12, shards: 3 }); // 36 samples: 9 batches of 4
});

const open = (resume: LoaderState | null) => createLoader({ source: shards, batchSize: BATCH, seed: 5, shuffle: true, workers: 0, rank: 0, worldSize: 1, resume: resume ?? undefined });

/**
 * `steps` optimizer steps of `ranks` ranks from `resume` (each rank its own loader, as separate
 * processes have), or to the end of the epoch when null: the ids each rank trained, and the
 * global position after (every rank's loader agrees on it).
 */
async function train(ranks: number, resume: LoaderState | null, steps: number | null): Promise<{ ids: string[][]; state: LoaderState }> {
  const ids: string[][] = [];
  const states: string[] = [];
  for (let rank = 0; rank < ranks; rank++) {
    const loader = open(resume);
    const it = loader[Symbol.asyncIterator]();
    const mine: string[] = [];
    for (let s = 0; steps === null || s < steps; s++) {
      const step: Batch[] = [];
      while (step.length < GLOBAL) {
        const r = await it.next();
        if (r.done) break;
        step.push(r.value);
      }
      const seeds = step.map((_, k) => k);
      for (const b of rankShare(step, seeds, rank, ranks).own) mine.push(...b.sampleIds.filter((_, i) => !b.padding[i]));
      if (step.length < GLOBAL) break;
    }
    states.push(JSON.stringify(loader.state()));
    await it.return?.();
    ids.push(mine);
  }
  expect(new Set(states).size).toBe(1);
  return { ids, state: JSON.parse(states[0]!) as LoaderState };
}

async function everySample(): Promise<string[]> {
  const all: string[] = [];
  for await (const b of open(null)) all.push(...b.sampleIds.filter((_, i) => !b.padding[i]));
  return all.sort();
}

describe('exactly-once resume on another number of ranks', () => {
  for (const [before, after] of [
    [2, 1],
    [1, 2],
  ] as const) {
    it(`${before} -> ${after} ranks, checkpoint after 1 of 3 steps: each sample of the epoch trained once`, async () => {
      const head = await train(before, null, 1);
      expect(head.state.batches).toBe(GLOBAL);
      const tail = await train(after, head.state, null);
      const trained = [...head.ids.flat(), ...tail.ids.flat()].sort();
      expect(trained).toEqual(await everySample());
      expect(trained).toHaveLength(36);
      // Ranks of one step never share a sample.
      for (const part of [head, tail]) if (part.ids.length === 2) expect(part.ids[0]!.filter((id) => part.ids[1]!.includes(id))).toEqual([]);
    });
  }
});
