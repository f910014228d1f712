import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDataset, tempDir } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let dir: string;
let cleanup: () => void;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('bench'));
  await makeDataset(dir, { shards: 3, rowsPerShard: 6, formats: ['arrow', 'parquet'] });
});
afterAll(() => cleanup());

describe('rpv bench loader', () => {
  it('measures the raw-read ceiling and the loader on Arrow and Parquet, with and without its shard checks, checking what it timed', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'bench', 'loader', dir, '--json', '--batch-size', '4'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 100_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const cases = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(cases.map((c) => c.case)).toEqual(['raw-read-arrow', 'loader-arrow', 'loader-arrow-unverified', 'raw-read-parquet', 'loader-parquet', 'loader-parquet-unverified']);
    for (const c of cases.filter((c) => /^loader-\w+$/.test(c.case))) {
      const peer = cases.find((p) => p.case === `${c.case}-unverified`);
      expect([c.verify, peer.verify]).toEqual([true, false]);
      expect(c.unverifiedSamplesPerSec).toBe(peer.samplesPerSec);
      expect(c.verifyCost).toBeCloseTo(1 - c.samplesPerSec / peer.samplesPerSec, 2);
    }
    for (const c of cases.filter((c) => c.case.startsWith('loader-'))) {
      expect(c.correct).toBe(true);
      expect(c.samples).toBe(c.batches * 4);
      expect(c.featureVsCeiling).toBeCloseTo(c.featureMBps / c.ceilingMBps, 1);
    }
  });

  it('names a folder without an index', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'bench', 'loader', path.join(dir, 'nope')], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`readShardIndex: ${path.join(dir, 'nope', 'index.json')}: not found`);
  });
});
