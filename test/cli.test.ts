// The command line as the README starts it: `npx rpv ...` after `npm ci` (whose `prepare` builds
// dist/). A clean clone once left dist/cli.js without its run bit, so `npx rpv demo` failed with
// "Permission denied"; this runs the same path.
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const commands = ['demo', 'env', 'sample-export', 'convert', 'inspect', 'merge', 'bench', 'make-tiny-model', 'score', 'merge-lora', 'train', 'generate', 'plot', 'eval', 'rate'];

it('`npx rpv --help` runs the built CLI and lists every command', async () => {
  const cli = path.join(root, 'dist', 'cli.js');
  expect(statSync(cli, { throwIfNoEntry: false }), 'dist/cli.js is missing: `npm ci` (or `npm run build`) makes it').toBeDefined();
  expect(statSync(cli).mode & 0o111, 'dist/cli.js must be executable').not.toBe(0);
  const { stdout } = await run('npx', ['--no-install', 'rpv', '--help'], { cwd: root });
  for (const name of commands) expect(stdout).toMatch(new RegExp(`^  rpv ${name}\\b`, 'm'));
}, 180_000);

it('every command has --help with an example', async () => {
  const cli = path.join(root, 'dist', 'cli.js');
  const helps = await Promise.all(commands.map(async (name) => [name, (await run(process.execPath, [cli, name, '--help'], { cwd: root })).stdout] as const));
  for (const [name, text] of helps) {
    expect(text, name).toMatch(new RegExp(`^rpv ${name}\\b`, 'm'));
    expect(text, name).toMatch(/^Examples:\n {2}rpv /m);
  }
}, 120_000);
