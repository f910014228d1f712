import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeFfmpeg, resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { ensureExecutable, locateBinary } from '../../src/media/ffmpeg.js';
import { tempDir } from './helpers.js';

let dir: string;

/** A stand-in "binary": a shell script that prints a version line, written without its run bit. */
async function fakeTool(file: string, line: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, `#!/bin/sh\necho "${line}"\n`, { mode: 0o644 });
}

beforeAll(async () => {
  dir = await tempDir('ffmpeg');
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('resolveFfmpeg', () => {
  it('finds working ffmpeg and ffprobe and reports their versions', async () => {
    const paths = await resolveFfmpeg();
    const d = await describeFfmpeg();
    expect(d.ffmpeg.path).toBe(paths.ffmpegPath);
    expect(d.ffprobe.path).toBe(paths.ffprobePath);
    expect(d.ffmpeg.version).toMatch(/^ffmpeg version /);
    expect(d.ffprobe.version).toMatch(/^ffprobe version /);
    expect(['env', 'path', 'package']).toContain(paths.source);
  });

  it('prefers FFMPEG_PATH, and says so when it is unusable', async () => {
    const tool = path.join(dir, 'env', 'ffmpeg');
    await fakeTool(tool, 'ffmpeg version 9.9-test');
    await fs.chmod(tool, 0o755);
    expect(await locateBinary('ffmpeg', { env: { FFMPEG_PATH: tool, PATH: '' } })).toEqual({ path: tool, version: 'ffmpeg version 9.9-test', source: 'env' });
    const bad = path.join(dir, 'nothing', 'ffmpeg');
    await expect(locateBinary('ffmpeg', { env: { FFMPEG_PATH: bad } })).rejects.toThrow(
      `FFMPEG_PATH=${bad}: not a usable ffmpeg (spawn ${bad} ENOENT); unset it to use the system or bundled ffmpeg`,
    );
  });

  it('takes a tool on PATH before the bundled one', async () => {
    const bin = path.join(dir, 'bin');
    await fakeTool(path.join(bin, 'ffprobe'), 'ffprobe version 1.0-on-path');
    await fs.chmod(path.join(bin, 'ffprobe'), 0o755);
    expect(await locateBinary('ffprobe', { env: { PATH: bin } })).toMatchObject({ source: 'path', version: 'ffprobe version 1.0-on-path' });
  });

  it('fixes a bundled binary without its run bit: chmod, or a copy in the cache when chmod is refused', async () => {
    const pkg = path.join(dir, 'pkg');
    await fakeTool(path.join(pkg, 'ffmpeg'), 'ffmpeg version bundled');
    const cacheDir = path.join(dir, 'cache');
    const refused = await locateBinary('ffmpeg', {
      env: { PATH: '', RPV_CACHE_DIR: cacheDir },
      packageDir: pkg,
      chmod: async () => {
        throw Object.assign(new Error('EPERM: operation not permitted'), { code: 'EPERM' });
      },
    });
    expect(refused).toMatchObject({ source: 'package', version: 'ffmpeg version bundled', fixed: 'copy' });
    expect(path.dirname(refused.path)).toBe(path.join(cacheDir, 'bin'));
    expect((await fs.stat(path.join(pkg, 'ffmpeg'))).mode & 0o111).toBe(0);

    const fixed = await locateBinary('ffmpeg', { env: { PATH: '', RPV_CACHE_DIR: cacheDir }, packageDir: pkg });
    expect(fixed).toEqual({ path: path.join(pkg, 'ffmpeg'), version: 'ffmpeg version bundled', source: 'package', fixed: 'chmod' });
    expect(await ensureExecutable(path.join(pkg, 'ffmpeg'), { cacheDir })).toEqual({ file: path.join(pkg, 'ffmpeg') });
  });

  it('names every way to get ffmpeg when none is found', async () => {
    await expect(locateBinary('ffmpeg', { env: { PATH: '' }, packageDir: path.join(dir, 'no-package') })).rejects.toThrow(
      /^no usable ffmpeg: set FFMPEG_PATH, install ffmpeg on PATH \(e\.g\. apt-get install ffmpeg\), or install the npm package @ffmpeg-installer\/ffmpeg\. Tried: /,
    );
  });
});

describe('rpv env', () => {
  it('reports the ffmpeg and ffprobe in use and how they are started', async () => {
    const { cli } = await import('../convert/fixtures.js');
    const { code, stdout } = await cli(['env', '--json', '--backend', 'cpu']);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { media: { ffmpeg: { path: string; version: string }; ffprobe: { path: string }; started: string } };
    const d = await describeFfmpeg();
    expect(report.media.ffmpeg).toMatchObject({ path: d.ffmpeg.path, version: d.ffmpeg.version });
    expect(report.media.ffprobe.path).toBe(d.ffprobe.path);
    const native = process.env.RPV_SPAWN !== 'node' && process.platform === 'linux' && (await import('../../src/native/addon.js')).loadNativeAddon().addon !== null;
    expect(report.media.started).toMatch(native ? /^posix_spawn \(native addon/ : /^child_process \(/);
  }, 60_000);
});
