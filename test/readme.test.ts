// The README's commands as written: every `rpv ...` / `npx rpv ...` line of its sh blocks and
// every inline `rpv ...` span names a command and only options and positionals that command
// accepts (parsed by the CLI's own parser, stopped before any handler runs); the short ones run as
// written, in the README's order, one folder per section, and every other one is listed as not
// run with the reason (a new README command fails the test until it is one or the other). Also
// the npm 11 install-script approvals the README describes.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { commands } from '../src/commands/index.js';
import { resolveFfmpeg } from '../src/media/ffmpeg.js';
import { AFTER_DEMO, bundledBuild, parseDemoOutput, readmeFigures, versionTag, words } from './demo/demo-run.js';

const repo = path.resolve(import.meta.dirname, '..');
const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');

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

/** One README command, run as written: its exit code (default 0) and a line of what it prints. */
interface Step {
  line: string;
  shows: string;
  exit?: number[];
}

/** The README's command as a user runs it: the installed CLI (dist/, built by npm ci), from `cwd`. */
async function rpv(line: string, cwd: string): Promise<{ code: number; output: string }> {
  const args = [path.join(repo, 'dist', 'cli.js'), ...words(line).slice(1)];
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, args, { cwd, maxBuffer: 16 << 20 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as Error & { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw new Error(`${line}: ${e.message}`);
    return { code: e.code, output: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

/**
 * What a new user brings to "Your own clips and model": six clips with ffmpeg and an InternVL
 * JSONL whose records are the README's example line (clip01..clip06 for its clip03), and, for
 * the downloaded base model, a tiny model of the same layout in its folder (the qwen2.5-0.5b
 * preset writes 946 MB, and trains at seconds a step).
 */
async function ownClipsAndModel(cwd: string): Promise<void> {
  const example = /An InternVL line:\s*`(\{[^`]+\})`/.exec(readme)?.[1];
  if (!example) throw new Error('README.md: no "An InternVL line: `{...}`" in "Your own clips and model"');
  const record = JSON.parse(example) as { id: string; video: string };
  expect(record.video).toBe('videos/clip03.mp4');
  const { ffmpegPath } = await resolveFfmpeg();
  mkdirSync(path.join(cwd, 'my-data', 'videos'), { recursive: true });
  const lines: string[] = [];
  for (const n of ['01', '02', '03', '04', '05', '06']) {
    const video = path.join(cwd, 'my-data', 'videos', `clip${n}.mp4`);
    await promisify(execFile)(ffmpegPath, ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=s=96x64:r=10:d=3', '-c:v', 'mpeg4', '-pix_fmt', 'yuv420p', video]);
    lines.push(JSON.stringify({ ...record, id: record.id.replace('03', n), video: record.video.replace('03', n) }));
  }
  writeFileSync(path.join(cwd, 'my-data', 'data.jsonl'), `${lines.join('\n')}\n`);
  const made = await rpv('rpv make-tiny-model models/Qwen2.5-0.5B-Instruct', cwd);
  if (made.code !== 0 || !existsSync(path.join(cwd, 'models', 'Qwen2.5-0.5B-Instruct', 'config.json'))) throw new Error(`make-tiny-model: ${made.output}`);
}

const OWN_TRAIN =
  'rpv train recipes/qwen2.5-0.5b-video60k.yaml model.path=models/Qwen2.5-0.5B-Instruct data.shards=shards/mine output_dir=runs/mine train.max_steps=20 train.projector_warmup_steps=5 train.grad_accum_steps=2 data.heldout_fraction=0.25';

/** The README's commands that run in seconds, by section, in its order; each section in a fresh folder (not the checkout). */
const SECTIONS: { title: string; setup?: (cwd: string) => Promise<void>; steps: Step[] }[] = [
  { title: 'Use rpv from any folder', steps: [{ line: 'rpv env', shows: 'ffmpeg' }] },
  {
    title: 'Convert',
    steps: [
      { line: 'rpv sample-export my-export --clips 6', shows: '6 clips' },
      { line: 'rpv convert my-export --out shards/mine --format both --workers 2', shows: 'skipped   0' },
      { line: 'rpv inspect shards/mine --verify', shows: 'verify: all' },
    ],
  },
  {
    title: 'Train',
    steps: [
      // Run from any folder: recipes/ names rpv's own, whose placeholders are named as such.
      { line: 'rpv train recipes/qwen2.5-0.5b-video60k.yaml', exit: [1], shows: "model.path: /models/Qwen2.5-0.5B-Instruct (the recipe's placeholder path) does not exist" },
      { line: 'rpv train recipes/internvl2.5-1b-video60k.yaml', exit: [1], shows: "model.path: /models/InternVL2_5-1B (the recipe's placeholder path) does not exist" },
    ],
  },
  {
    title: 'Your own clips and model',
    setup: ownClipsAndModel,
    steps: [
      { line: 'rpv convert my-data --out shards/mine --max-frames 16', shows: 'converted 6 of 6 records (internvl)' },
      { line: 'rpv inspect shards/mine --verify', shows: 'verify: all' },
      {
        line: 'rpv train recipes/qwen2.5-0.5b-video60k.yaml model.path=models/Qwen2.5-0.5B-Instruct data.shards=shards/mine output_dir=runs/mine --dry-run',
        exit: [1],
        shows: 'train.projector_warmup_steps 200 is not below the run',
      },
      { line: `${OWN_TRAIN} --dry-run`, shows: 'optimizer steps: 20' },
      { line: `${OWN_TRAIN} --progress=false`, shows: 'finished at step 20/20' },
      { line: 'rpv train --resume runs/mine', shows: 'finished at step 20/20' },
      { line: 'rpv generate runs/mine --row videos/clip03 -m "Where does it go?"', shows: "profile: 3 other dialogues of Captain Nova" },
      // A model trained 20 steps from random weights may reply nothing: such replies are counted as failures (exit 2), as the README says.
      { line: 'rpv eval --run runs/mine --out runs/mine/eval', exit: [0, 2], shows: 'held-out loss' },
      { line: 'rpv merge-lora --model models/Qwen2.5-0.5B-Instruct --adapter runs/mine/adapter --out models/mine-merged', shows: 'the video projector' },
    ],
  },
  { title: 'WebGPU: GPU training without CUDA', steps: [{ line: 'rpv env --backend webgpu', shows: 'webgpu' }] },
];

const DEMO_DATA = "needs runs/demo and runs/demo-data, which `rpv demo` writes in minutes (test/demo/demo-*-ffmpeg.test.ts run the demo)";

/** The README's commands not run here, each with the reason. */
const NOT_RUN: Record<string, string> = {
  'rpv demo': 'minutes: test/demo/demo-bundled-ffmpeg.test.ts and demo-system-ffmpeg.test.ts run it, and compare its figures with the README',
  'rpv train recipes/demo.yaml optimizer.lr=1e-3': `a 1,200-step run, and ${DEMO_DATA}`,
  'rpv train recipes/demo.yaml --nproc 2': `${DEMO_DATA}; and Gloo (test/train/distributed.test.ts)`,
  'rpv make-tiny-model models/qwen-shaped --preset qwen2.5-0.5b': '946 MB of random weights, about 20 s (the presets: test/model)',
  'rpv rate serve base=runs/base/eval/answers.json lora=runs/lora/eval/answers.json --db ratings.duckdb --media-root my-export --raters alice bob':
    'a server that waits for raters, on the answers of two judged runs (test/rate)',
  'rpv rate export --db ratings.duckdb --csv ratings.csv': 'needs the ratings people left through rpv rate serve (test/rate)',
  'rpv rate agreement ratings.csv': 'needs the ratings people left through rpv rate serve (test/rate)',
  'rpv rate compare --human ratings.csv --judge base=runs/base/eval --judge lora=runs/lora/eval': 'needs human ratings and two judged runs (test/rate)',
};

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

  it('each of its commands is run below or listed as not run, with the reason', () => {
    const norm = (l: string) => l.replace(/\s+/g, ' ');
    // AFTER_DEMO: run by the demo tests after the demo, in its folder (test/demo/demo-run.ts).
    const listed = [...SECTIONS.flatMap((s) => s.steps.map((step) => step.line)), ...Object.values(AFTER_DEMO), ...Object.keys(NOT_RUN)].map(norm);
    const inReadme = lines.map(norm);
    expect(inReadme.filter((l) => !listed.includes(l))).toEqual([]);
    // And the lists name only commands the README has.
    expect(listed.filter((l) => !inReadme.includes(l))).toEqual([]);
  });

  for (const section of SECTIONS) {
    it(`"${section.title}": its commands run as written, in order, in a fresh folder`, async () => {
      const cwd = mkdtempSync(path.join(os.tmpdir(), 'rpv-readme-'));
      try {
        await section.setup?.(cwd);
        for (const step of section.steps) {
          const { code, output } = await rpv(step.line, cwd);
          const exits = step.exit ?? [0];
          if (!exits.includes(code)) throw new Error(`${step.line}: exit ${code}, expected ${exits.join(' or ')}\n${output}`);
          expect(output, step.line).toContain(step.shows);
        }
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    });
  }

  it("its demo figures: the printout shown is the bundled row of the table, and CI's Debian 5.1.9 has a row", async () => {
    // The same parsers as test/demo/demo-*-ffmpeg.test.ts, which compare them with the demo's output.
    const printout = /^```\n(\[6\/6\] results\n[\s\S]*?)```/m.exec(readme)?.[1];
    expect(printout).toBeDefined();
    const bundled = readmeFigures(versionTag((await bundledBuild()).ffmpeg.version));
    expect(bundled).not.toBeNull();
    expect(parseDemoOutput(printout!)).toEqual(bundled);
    expect(readmeFigures('5.1.9')).not.toBeNull();
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
