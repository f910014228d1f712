/**
 * The contract users rely on: after the build, `import { createLoader } from 'rpv'` works from
 * plain Node (no TypeScript loader), and the loader's worker threads start from dist/.
 * This test builds nothing: it needs `npx tsc -p tsconfig.build.json` (npm's `prepare`) first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerEntry } from '../../src/loader/pool.js';
import { makeDataset, tempDir } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let dir: string;
let cleanup: () => void;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('package'));
  await makeDataset(path.join(dir, 'shards'), { shards: 3, rowsPerShard: 4 });
});
afterAll(() => cleanup());

describe("import { createLoader } from 'rpv'", () => {
  it('works from the built package in a plain Node ESM script, workers included', () => {
    const missing = ['dist/index.js', 'dist/loader/worker.js'].filter((f) => !existsSync(path.join(root, f)));
    expect(missing, `build output missing (${missing.join(', ')}): run \`npx tsc -p tsconfig.build.json\` before the tests`).toEqual([]);
    const app = path.join(dir, 'app');
    mkdirSync(path.join(app, 'node_modules'), { recursive: true });
    symlinkSync(root, path.join(app, 'node_modules', 'rpv'), 'dir');
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    writeFileSync(
      path.join(app, 'main.js'),
      [
        "import { createLoader, collate } from 'rpv';",
        `const loader = createLoader({ source: ${JSON.stringify(path.join(dir, 'shards'))}, batchSize: 4, seed: 1, workers: 2 });`,
        'const ids = [];',
        '// Two epochs: the workers stay between them and must not keep the process alive after.',
        'for (let epoch = 0; epoch < 2; epoch++) for await (const batch of loader) ids.push(...batch.sampleIds);',
        "console.log(JSON.stringify({ ids, collate: typeof collate, state: loader.state() }));",
      ].join('\n'),
    );
    const env = { ...process.env, NODE_OPTIONS: '' };
    const run = spawnSync(process.execPath, ['main.js'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout) as { ids: string[]; collate: string; state: { epoch: number } };
    expect(out.collate).toBe('function');
    expect(out.state.epoch).toBe(2);
    // 12 videos with 1-4 dialogues each: 30 samples, padded to 8 batches of 4, twice.
    expect(new Set(out.ids).size).toBe(30);
    expect(out.ids.length).toBe(64);
  });

  it('under vitest, workers start from the TypeScript source through tsx', () => {
    // The other loader tests run their workers this way; this pins which path they took.
    expect(workerEntry().kind).toBe('ts');
  });
});
