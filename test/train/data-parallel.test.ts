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
import { describeDistributed, distributedEnv, loadCollective } from '../../src/train/distributed.js';
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

describe('the job from the environment', () => {
  it('is a single process without WORLD_SIZE > 1', () => {
    expect(distributedEnv({})).toBeNull();
    expect(distributedEnv({ WORLD_SIZE: '1', RANK: '0' })).toBeNull();
  });

  it('reads the torchrun variables, and Slurm\'s where those are absent', () => {
    expect(distributedEnv({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '1', MASTER_ADDR: 'node0', MASTER_PORT: '29500' })).toEqual({ rank: 1, worldSize: 2, localRank: 0, localWorldSize: 1, masterAddr: 'node0', masterPort: 29500, timeoutSec: 60 });
    expect(distributedEnv({ SLURM_PROCID: '3', SLURM_NTASKS: '8', SLURM_LOCALID: '1', MASTER_ADDR: 'n0', MASTER_PORT: '1234', RPV_DIST_TIMEOUT_SEC: '5' })).toMatchObject({ rank: 3, worldSize: 8, localRank: 1, masterPort: 1234, timeoutSec: 5 });
  });

  it('names what is missing or wrong', () => {
    expect(() => distributedEnv({ WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' })).toThrow('train: WORLD_SIZE=2 but no RANK: set RANK (0 to 1) for each process');
    expect(() => distributedEnv({ WORLD_SIZE: '2', RANK: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' })).toThrow('train: RANK=2 is not below WORLD_SIZE=2');
    expect(() => distributedEnv({ WORLD_SIZE: '2', RANK: '0', MASTER_PORT: '1' })).toThrow("train: WORLD_SIZE=2 but MASTER_ADDR is not set: set it to rank 0's host name or address");
    expect(() => distributedEnv({ WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: 'a', MASTER_PORT: '70000' })).toThrow("train: WORLD_SIZE=2 but MASTER_PORT is 70000, not a port: set it to a free TCP port on rank 0's host");
    expect(() => distributedEnv({ WORLD_SIZE: 'two' })).toThrow('train: environment WORLD_SIZE=two: expected a non-negative integer');
  });

  it('rpv env says whether the route is available, and why not', () => {
    const d = describeDistributed();
    expect(d.available).toBe(loadCollective().addon !== null);
    if (!d.available) expect(d.reason).toMatch(/Gloo is not installed|rpv_collective.node/);
  });
});
