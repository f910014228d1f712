// `rpv demo` end to end with one ffmpeg build forced, and the README's figures for that build:
// shared by demo-bundled-ffmpeg.test.ts and demo-system-ffmpeg.test.ts (two files, so vitest's two
// workers run the two demos side by side).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { locateBinary, type BinaryInfo } from '../../src/media/ffmpeg.js';
import { loadNativeAddon } from '../../src/native/addon.js';

const repo = path.resolve(import.meta.dirname, '../..');
const IN_CI = process.env.RPV_CI === '1';

/** The demo takes about 2m15s on a quiet 2-core machine and over 6 minutes under load. */
export const DEMO_TIMEOUT_MS = 20 * 60_000;

/** The figures the demo prints in its results, and those of one row of the README's table. */
export interface DemoFigures {
  heldOut: { video: number; textOnly: number };
  videoWords: { video: number; textOnly: number };
  naming: { video: { right: number; of: number }; textOnly: { right: number; of: number } };
}

export interface DemoBuild {
  ffmpeg: BinaryInfo;
  ffprobe: BinaryInfo;
}

/** The bundled build (@ffmpeg-installer / @ffprobe-installer), whatever is on PATH or in FFMPEG_PATH. */
export async function bundledBuild(): Promise<DemoBuild> {
  const packaged = { env: { ...process.env, FFMPEG_PATH: '', FFPROBE_PATH: '' }, skipPath: true };
  const [ffmpeg, ffprobe] = await Promise.all([locateBinary('ffmpeg', packaged), locateBinary('ffprobe', packaged)]);
  return { ffmpeg, ffprobe };
}

/** The ffmpeg and ffprobe on PATH (FFMPEG_PATH ignored), or null when PATH has none. */
export async function systemBuild(): Promise<DemoBuild | null> {
  const onPath = { env: { ...process.env, FFMPEG_PATH: '', FFPROBE_PATH: '' } };
  const [ffmpeg, ffprobe] = await Promise.all([locateBinary('ffmpeg', onPath), locateBinary('ffprobe', onPath)]);
  return ffmpeg.source === 'path' && ffprobe.source === 'path' ? { ffmpeg, ffprobe } : null;
}

/** The build's version as the README's table names it: `N-47683` of a git build, `5.1.9` of a release. */
export function versionTag(versionLine: string): string {
  const version = /version (\S+)/.exec(versionLine)?.[1];
  if (!version) throw new Error(`no version in ffmpeg's first line: ${versionLine}`);
  return /^N-\d+/.exec(version)?.[0] ?? version.split('-')[0]!;
}

/** Shell-like words: spaces split, double or single quotes group. */
export function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/**
 * The README's commands that need the demo's folders (runs/demo, runs/demo-data): the demo tests
 * run them as written, after the demo, in its folder (test/readme.test.ts counts them as run).
 */
export const AFTER_DEMO = {
  dryRun: 'rpv train recipes/demo.yaml --dry-run',
  resume: 'rpv train --resume runs/demo',
  generate: 'rpv generate runs/demo --video runs/demo-data/export/videos/clip-08.mp4 --role "Professor Pixel" -m "What colour is the moving thing?"',
  evaluate: 'rpv eval --run runs/demo --out runs/demo/eval',
};

const both = (r: { stdout: string; stderr: string }) => `${r.stderr}\n${r.stdout}`;

/** One `rpv ...` line run in the demo's folder as the installed CLI runs it. */
export type RunLine = (line: string) => Promise<{ stdout: string; stderr: string }>;

/**
 * `rpv demo` as a user runs it (dist/cli.js, built by npm ci) in a fresh folder, with this build
 * forced; then `after`, given a way to run more `rpv` lines in that folder, before it is removed.
 */
export async function runDemo<T>(build: DemoBuild, after: (run: RunLine) => Promise<T>): Promise<{ stdout: string; stderr: string; after: T }> {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'rpv-demo-'));
  const env = { ...process.env, FFMPEG_PATH: build.ffmpeg.path, FFPROBE_PATH: build.ffprobe.path };
  const run = (args: string[], what: string) =>
    promisify(execFile)(process.execPath, [path.join(repo, 'dist', 'cli.js'), ...args], { cwd, env, maxBuffer: 16 << 20 }).catch((err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`${what} with ${build.ffmpeg.path}: ${err.message.split('\n')[0]}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
    });
  try {
    const demo = await run(['demo', '--progress=false'], 'rpv demo');
    return { ...demo, after: await after((line) => run(words(line).slice(1), line)) };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

/** Which matmul kernel the demo's training used: another one sums in another order. */
function matmulRoute(): string {
  if (process.env.RPV_NATIVE_MATMUL === '0') return 'wasm (RPV_NATIVE_MATMUL=0)';
  const load = loadNativeAddon();
  return load.addon ? `native ${load.addon.isa()}` : `wasm (${load.reason})`;
}

/** The results the demo prints: the table of both runs and the naming counts. */
export function parseDemoOutput(stdout: string): DemoFigures {
  const row = (name: string) => {
    const m = new RegExp(`^\\s+${name}\\s+([\\d.]+)\\s+[\\d.]+\\s+([\\d.]+)\\s*$`, 'm').exec(stdout);
    if (!m) throw new Error(`no results row "${name}" in the demo's output:\n${stdout}`);
    return { heldOut: Number(m[1]), videoWords: Number(m[2]) };
  };
  const naming = (name: string) => {
    const m = new RegExp(`^\\s+${name}\\s+(\\d+)/(\\d+) right`, 'm').exec(stdout);
    if (!m) throw new Error(`no naming line "${name}" in the demo's output:\n${stdout}`);
    return { right: Number(m[1]), of: Number(m[2]) };
  };
  const video = row('demo');
  const textOnly = row('demo-text-only');
  return {
    heldOut: { video: video.heldOut, textOnly: textOnly.heldOut },
    videoWords: { video: video.videoWords, textOnly: textOnly.videoWords },
    naming: { video: naming('demo'), textOnly: naming('demo-text-only') },
  };
}

/**
 * The row of the README's table "| ffmpeg | held-out loss, video / text-only | ..." whose first
 * cell names this build's version tag, or null when none does.
 */
export function readmeFigures(tag: string): DemoFigures | null {
  const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
  const table = /^\| ffmpeg \| held-out loss, video \/ text-only \|.*\n\|[-| ]+\|\n((?:\|.*\n)+)/m.exec(readme);
  if (!table) throw new Error('README.md: no table "| ffmpeg | held-out loss, video / text-only | ..."');
  for (const line of table[1]!.trimEnd().split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (!cells[0]!.includes(tag)) continue;
    const pair = (cell: string) => {
      const m = /^([\d.]+) \/ ([\d.]+)$/.exec(cell);
      if (!m) throw new Error(`README.md: table row "${cells[0]}": "${cell}" is not "<video> / <text-only>"`);
      return { video: Number(m[1]), textOnly: Number(m[2]) };
    };
    const m = /^(\d+)\/(\d+) \(\d+%\) \/ (\d+)\/(\d+) \(\d+%\)$/.exec(cells[3] ?? '');
    if (!m) throw new Error(`README.md: table row "${cells[0]}": "${cells[3]}" is not "<right>/<of> (<p>%) / <right>/<of> (<p>%)"`);
    return {
      heldOut: pair(cells[1]!),
      videoWords: pair(cells[2]!),
      naming: { video: { right: Number(m[1]), of: Number(m[2]) }, textOnly: { right: Number(m[3]), of: Number(m[4]) } },
    };
  }
  return null;
}

/** What `rpv eval` prints without a judge: held-out loss and perplexity, ROUGE-L F1 and BLEU-4 per role and overall. */
export interface EvalFigures {
  loss: string;
  ppl: string;
  overall: { rouge: string; bleu: string };
  roles: Record<string, string>;
}

export function parseEvalOutput(stdout: string): EvalFigures {
  const held = /^held-out loss ([\d.]+)\s+perplexity ([\d.]+)/m.exec(stdout);
  if (!held) throw new Error(`no "held-out loss" line in rpv eval's output:\n${stdout}`);
  const roles: Record<string, string> = {};
  let overall: EvalFigures['overall'] | null = null;
  for (const m of stdout.matchAll(/^(\S.*?)\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)$/gm)) {
    if (m[1] === 'overall') overall = { rouge: m[2]!, bleu: m[3]! };
    else roles[m[1]!] = m[2]!;
  }
  if (!overall) throw new Error(`no "overall" row in rpv eval's output:\n${stdout}`);
  return { loss: held[1]!, ppl: held[2]!, overall, roles };
}

/**
 * The row of the README's table "| run | ffmpeg | held-out loss (ppl) | ROUGE-L F1 | ..." for `run`
 * ("demo (with video)" or "demo-text-only") whose ffmpeg cell names this build ("bundled", or its
 * version tag), or null when none does.
 */
export function readmeEvalFigures(run: string, build: 'bundled' | string): EvalFigures | null {
  const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
  const table = /^\| run \| ffmpeg \| held-out loss \(ppl\) \| ROUGE-L F1 \| BLEU-4 \| ROUGE-L per role: (.*) \|\n\|[-| ]+\|\n((?:\|.*\n)+)/m.exec(readme);
  if (!table) throw new Error('README.md: no table "| run | ffmpeg | held-out loss (ppl) | ROUGE-L F1 | BLEU-4 | ROUGE-L per role: ... |"');
  const roleNames = table[1]!.split(' / ');
  for (const line of table[2]!.trimEnd().split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells[0] !== run || !(build === 'bundled' ? cells[1] === 'bundled' : cells[1]!.includes(build))) continue;
    const held = /^([\d.]+) \(([\d.]+)\)$/.exec(cells[2]!);
    const perRole = cells[5]!.split(' / ');
    if (!held || perRole.length !== roleNames.length) throw new Error(`README.md: eval table row "${line}" is not "<loss> (<ppl>)" with one ROUGE-L per role`);
    return { loss: held[1]!, ppl: held[2]!, overall: { rouge: cells[3]!, bleu: cells[4]! }, roles: Object.fromEntries(roleNames.map((r, i) => [r, perRole[i]!])) };
  }
  return null;
}

/** The reply the README's Use section shows for `rpv generate runs/demo ...` (bundled ffmpeg). */
export function readmeGenerateReply(): string {
  const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
  const m = /^```\nprofile: .*\n(.*)\n```$/m.exec(readme);
  if (!m) throw new Error('README.md: no block "profile: ...\n<reply>" after the generate command');
  return m[1]!;
}

/**
 * The tests of one build: what the README says holds on any decoder (the model that watches the
 * video has a clearly lower loss on the colour/direction words and names them clearly more often;
 * the text-only model is near chance), and the figures of the README's row for this build.
 * `build` null: skipped with `missing` as the reason, or failed under RPV_CI=1.
 */
export function describeDemo(title: string, build: DemoBuild | null, missing: string): void {
  if (!build && !IN_CI) process.stdout.write(`${title}: skipped: ${missing}\n`);
  describe.skipIf(!build && !IN_CI)(title, () => {
    let figures: DemoFigures;
    let output: string;
    let after: { dryRun: string; resume: string; generate: string; evalVideo: string; evalTextOnly: string };

    beforeAll(async () => {
      if (!build) throw new Error(`${missing}, and RPV_CI is set: .ci/run installs Debian's ffmpeg with apt-get`);
      const r = await runDemo(build, async (run) => ({
        dryRun: (await run(AFTER_DEMO.dryRun)).stdout,
        resume: (await run(AFTER_DEMO.resume)).stdout,
        generate: (await run(AFTER_DEMO.generate)).stdout,
        // The held-out loss goes to stderr, the scores to stdout.
        evalVideo: both(await run(AFTER_DEMO.evaluate)),
        // Not a README command, but its table has the text-only run's row too.
        evalTextOnly: both(await run('rpv eval --run runs/demo-text-only --out runs/demo-text-only/eval')),
      }));
      output = r.stdout;
      after = r.after;
      figures = parseDemoOutput(output);
    }, DEMO_TIMEOUT_MS);

    it('the model that watches the video has a clearly lower loss on the colour/direction words than the text-only one', () => {
      expect(figures.videoWords.textOnly - figures.videoWords.video).toBeGreaterThan(0.2);
      expect(figures.heldOut.video).toBeLessThan(figures.heldOut.textOnly);
    });

    it('it names the clip\'s colour/direction clearly more often; the text-only model is near chance', () => {
      const rate = (r: { right: number; of: number }) => r.right / r.of;
      expect(figures.naming.video.of).toBe(figures.naming.textOnly.of);
      expect(figures.naming.video.of).toBeGreaterThan(100);
      expect(rate(figures.naming.textOnly)).toBeGreaterThan(0.15);
      expect(rate(figures.naming.textOnly)).toBeLessThan(0.35);
      expect(rate(figures.naming.video) - rate(figures.naming.textOnly)).toBeGreaterThan(0.15);
    });

    it('the README\'s commands on the demo\'s runs run as written: dry-run, resume of the finished run, generate, eval', () => {
      expect(after.dryRun).toContain('<|im_start|>assistant');
      expect(after.resume).toContain('finished at step 1200/1200');
      // generate's greedy reply to clip-08 is the demo's own showcase reply when the showcase asked
      // the same question (it picks its example per build).
      const reply = after.generate.trimEnd().split('\n').pop();
      const example = /e\.g\. held-out clip clip-08 \(Professor Pixel\): "(.*)"\n.*\n\s+demo\s{2,}(.*)\n/.exec(output);
      if (example?.[1] === 'What colour is the moving thing?') expect(reply).toBe(example[2]);
      if (build!.ffmpeg.source === 'package') {
        expect(reply, "README.md's Use section shows the bundled build's reply").toBe(readmeGenerateReply());
        // And the README's opening shows this build's printout of the results, but for the time.
        const shown = /^```\n(\[6\/6\] results\n[\s\S]*?)\n```$/m.exec(readFileSync(path.join(repo, 'README.md'), 'utf8'))?.[1];
        const printed = output.slice(output.indexOf('[6/6] results')).split('\n');
        const upTo = printed.findIndex((l) => l.includes('curves: '));
        const untimed = (t: string) => t.replace(/total \S+$/, 'total <time>');
        expect(untimed(printed.slice(0, upTo + 1).join('\n')), "README.md's printout of the demo's results").toBe(untimed(shown ?? ''));
      }
    });

    it('prints the figures of the README\'s table row for this build, exactly', (ctx) => {
      const tag = versionTag(build!.ffmpeg.version);
      const expected = readmeFigures(tag);
      // The README's rows were measured with the native AVX2/FMA kernel; another matmul sums in
      // another order, and 1,200 steps may amplify that.
      const route = matmulRoute();
      const reason = !expected
        ? `README.md's table "| ffmpeg | held-out loss ..." has no row for ffmpeg ${tag} (${build!.ffmpeg.version})`
        : route !== 'native avx2-fma'
          ? `the README's figures are those of the native avx2-fma kernel; here the matmuls ran on ${route}`
          : null;
      if (reason) {
        if (IN_CI) throw new Error(`${reason}, and RPV_CI is set: CI must print the README's figures; the demo printed:\n${output}`);
        process.stdout.write(`${title}: figures not compared: ${reason}\n`);
        ctx.skip();
        return;
      }
      // Exact: for one ffmpeg build and kernel the demo prints the same figures on every run (README).
      expect(figures, `README.md's row for ffmpeg ${tag}`).toEqual(expected);
      // And `rpv eval` of both runs prints the rows of the README's eval table for this build.
      const which = build!.ffmpeg.source === 'package' ? 'bundled' : tag;
      expect(parseEvalOutput(after.evalVideo), `README.md's eval row "demo (with video)" for ffmpeg ${which}`).toEqual(readmeEvalFigures('demo (with video)', which));
      expect(parseEvalOutput(after.evalTextOnly), `README.md's eval row "demo-text-only" for ffmpeg ${which}`).toEqual(readmeEvalFigures('demo-text-only', which));
    });
  });
}
