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

/** `rpv demo` as a user runs it (dist/cli.js, built by npm ci) in a fresh folder, with this build forced. */
export async function runDemo(build: DemoBuild): Promise<{ stdout: string; stderr: string }> {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'rpv-demo-'));
  try {
    const env = { ...process.env, FFMPEG_PATH: build.ffmpeg.path, FFPROBE_PATH: build.ffprobe.path };
    return await promisify(execFile)(process.execPath, [path.join(repo, 'dist', 'cli.js'), 'demo', '--progress=false'], {
      cwd,
      env,
      maxBuffer: 16 << 20,
    }).catch((err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`rpv demo with ${build.ffmpeg.path}: ${err.message.split('\n')[0]}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
    });
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

    beforeAll(async () => {
      if (!build) throw new Error(`${missing}, and RPV_CI is set: .ci/run installs Debian's ffmpeg with apt-get`);
      output = (await runDemo(build)).stdout;
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
    });
  });
}
