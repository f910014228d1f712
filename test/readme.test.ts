// The README's commands as written: every `rpv ...` / `npx rpv ...` line of its sh blocks and
// every inline `rpv ...` span names a command and only options and positionals that command
// accepts (parsed by the CLI's own parser, stopped before any handler runs). Also the npm 11
// install-script approvals the README describes.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { commands } from '../src/commands/index.js';

const repo = path.resolve(import.meta.dirname, '..');
const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');

/** Shell-like words: spaces split, double or single quotes group. */
function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** The README's rpv command lines: sh blocks (comments and `\` continuations handled) and inline spans. */
function readmeCommands(): string[] {
  const found: string[] = [];
  for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const joined = block[1]!.replace(/\\\n/g, ' ');
    for (const raw of joined.split('\n')) {
      for (const part of raw.replace(/\s#\s.*$/, '').split(/&&|;/)) {
        const m = /^\s*(?:npx\s+)?rpv\s+(.*)$/.exec(part);
        if (m) found.push(`rpv ${m[1]!.trim()}`);
      }
    }
  }
  for (const span of readme.matchAll(/`(?:npx )?(rpv [^`]+)`/g)) {
    const text = span[1]!.replace(/\s+/g, ' ').trim();
    // Patterns such as `rpv convert <export> --out <shards>` are syntax, and `rpv score` in prose
    // names a command: neither is a command line.
    if (!/[<>|]|\.\.\.| \/ /.test(text) && text.split(' ').length >= 3) found.push(text);
  }
  return [...new Set(found)];
}

class Parsed extends Error {}

async function parse(line: string): Promise<void> {
  const parser = yargs(words(line).slice(1))
    .scriptName('rpv')
    .option('verbose', { type: 'boolean', global: true })
    .strict()
    .demandCommand(1)
    .help(false)
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    // After parsing and validation, before any handler: stop here.
    .middleware(() => {
      throw new Parsed();
    });
  for (const command of commands) parser.command(command);
  try {
    await parser.parseAsync();
  } catch (err) {
    if (err instanceof Parsed) return;
    throw new Error(`${line}: ${(err as Error).message}`);
  }
  throw new Error(`${line}: parsed without reaching a command`);
}

describe('README', () => {
  const lines = readmeCommands();

  it('holds the commands a new user needs, from any folder to a merged model', () => {
    expect(lines.length).toBeGreaterThan(20);
    for (const needed of ['rpv train --resume runs/demo', 'rpv env', 'rpv eval --run runs/mine --out runs/mine/eval']) expect(lines).toContain(needed);
    expect(readme).toContain('npm install -g .');
    expect(readme).toContain('## Your own clips and model');
  });

  it('every rpv command in it parses as written', async () => {
    const problems: string[] = [];
    for (const line of lines) await parse(line).catch((err: Error) => problems.push(err.message));
    expect(problems).toEqual([]);
  });

  it('its short commands (rpv env, rpv <command> --help) run as written from another folder and exit 0', async () => {
    const short = lines.filter((l) => /^rpv env\b/.test(l) || /^rpv [a-z-]+( [a-z-]+)? --help$/.test(l));
    expect(short.length).toBeGreaterThan(0);
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'rpv-readme-'));
    try {
      for (const line of short) {
        // The installed CLI (dist/, built by npm ci), as `npm install -g .` runs it.
        const args = [path.join(repo, 'dist', 'cli.js'), ...words(line).slice(1)];
        const { stdout } = await promisify(execFile)(process.execPath, args, { cwd }).catch((err: Error & { stderr?: string }) => {
          throw new Error(`${line}: ${err.message.split('\n')[0]} ${err.stderr ?? ''}`);
        });
        expect(stdout.length, line).toBeGreaterThan(0);
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('a misspelt option would be caught', async () => {
    await expect(parse('rpv train --resum runs/demo')).rejects.toThrow('rpv train --resum runs/demo: Unknown argument: resum');
  });

  it('approves every dependency install script of the lock file (npm 11 allowScripts)', () => {
    const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean }> };
    const scripted = Object.entries(lock.packages)
      .filter(([key, p]) => key !== '' && p.hasInstallScript)
      .map(([key]) => key.replace(/^.*node_modules\//, ''));
    expect(scripted.filter((name) => pkg.allowScripts?.[name] !== true)).toEqual([]);
  });
});
