/**
 * Finding ffmpeg and ffprobe. Order, for each binary on its own:
 *
 * 1. `FFMPEG_PATH` / `FFPROBE_PATH` (an explicit choice: if set and unusable, that is an error),
 * 2. `ffmpeg` / `ffprobe` on `PATH` (a system build is usually newer and has hardware decoders),
 * 3. the static binaries shipped in `@ffmpeg-installer/<platform>` and `@ffprobe-installer/<platform>`.
 *
 * npm 11 skips dependencies' install scripts, so the shipped binaries may lack their run bit.
 * We add it when we can; when we cannot (read-only or foreign-owned node_modules) we copy the
 * binary into a cache folder (`$RPV_CACHE_DIR/bin`, default `~/.cache/rpv/bin`) and mark it there.
 * Every candidate is checked by running `-version`, whose first line `describeFfmpeg` reports.
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';

export type FfmpegSource = 'env' | 'path' | 'package';

export interface FfmpegPaths {
  ffmpegPath: string;
  ffprobePath: string;
  /** Where ffmpeg came from (ffprobe's own source is `ffprobeSource`). */
  source: FfmpegSource;
  ffmpegSource: FfmpegSource;
  ffprobeSource: FfmpegSource;
}

export interface BinaryInfo {
  path: string;
  /** First line of `-version`, e.g. `ffmpeg version 6.1.1-3ubuntu5 Copyright ...`. */
  version: string;
  source: FfmpegSource;
  /** Set when the shipped binary lacked its run bit and was fixed (`chmod`) or copied (`copy`). */
  fixed?: 'chmod' | 'copy';
}

export interface FfmpegDescription {
  ffmpeg: BinaryInfo;
  ffprobe: BinaryInfo;
}

type Tool = 'ffmpeg' | 'ffprobe';

const ENV_VAR: Record<Tool, string> = { ffmpeg: 'FFMPEG_PATH', ffprobe: 'FFPROBE_PATH' };
const PACKAGE: Record<Tool, string> = { ffmpeg: '@ffmpeg-installer', ffprobe: '@ffprobe-installer' };

let cached: Promise<FfmpegDescription> | undefined;

/** Paths of a usable ffmpeg and ffprobe; resolved once per process. */
export async function resolveFfmpeg(): Promise<FfmpegPaths> {
  const d = await describeFfmpeg();
  return {
    ffmpegPath: d.ffmpeg.path,
    ffprobePath: d.ffprobe.path,
    source: d.ffmpeg.source,
    ffmpegSource: d.ffmpeg.source,
    ffprobeSource: d.ffprobe.source,
  };
}

/** Path, version line and source of ffmpeg and ffprobe (for `rpv env`); resolved once per process. */
export function describeFfmpeg(): Promise<FfmpegDescription> {
  if (!cached) {
    cached = Promise.all([locateBinary('ffmpeg'), locateBinary('ffprobe')]).then(([ffmpeg, ffprobe]) => ({ ffmpeg, ffprobe }));
    // A failed resolution is not cached: the user may fix the environment and retry in-process.
    cached.catch(() => {
      cached = undefined;
    });
  }
  return cached;
}

/** Forget the cached resolution (tests, or after changing FFMPEG_PATH in-process). */
export function resetFfmpegCache(): void {
  cached = undefined;
}

export interface LocateOptions {
  /** Environment to read FFMPEG_PATH/FFPROBE_PATH/PATH/RPV_CACHE_DIR from; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Skip the PATH lookup (tests). */
  skipPath?: boolean;
  /** Override the folder holding the shipped binary (tests). */
  packageDir?: string;
  /** chmod implementation (tests inject a failing one to exercise the copy fallback). */
  chmod?: (file: string, mode: number) => Promise<void>;
}

/** Find one usable binary following the documented order. */
export async function locateBinary(tool: Tool, options: LocateOptions = {}): Promise<BinaryInfo> {
  const env = options.env ?? process.env;
  const explicit = env[ENV_VAR[tool]];
  if (explicit) {
    const version = await versionLine(explicit).catch((err: unknown) => {
      throw new RpvError(`${ENV_VAR[tool]}=${explicit}: not a usable ${tool} (${errorMessage(err)}); unset it to use the system or bundled ${tool}`);
    });
    return { path: explicit, version, source: 'env' };
  }
  const tried: string[] = [];
  if (!options.skipPath) {
    for (const dir of (env.PATH ?? '').split(path.delimiter)) {
      if (!dir) continue;
      const candidate = path.join(dir, exeName(tool));
      if (!(await isExecutableFile(candidate))) continue;
      try {
        return { path: candidate, version: await versionLine(candidate), source: 'path' };
      } catch (err) {
        tried.push(`${candidate}: ${errorMessage(err)}`);
      }
    }
  }
  let shipped: string;
  try {
    shipped = path.join(options.packageDir ?? packageBinaryDir(tool), exeName(tool));
    await fs.access(shipped, fsConstants.F_OK);
  } catch (err) {
    tried.push(`${PACKAGE[tool]}/${process.platform}-${process.arch}: ${errorMessage(err)}`);
    throw new RpvError(
      `no usable ${tool}: set ${ENV_VAR[tool]}, install ${tool} on PATH (e.g. apt-get install ffmpeg), or install the npm package ${PACKAGE[tool]}/${tool}. Tried: ${tried.join('; ') || 'nothing on PATH'}`,
    );
  }
  const { file, fixed } = await ensureExecutable(shipped, {
    cacheDir: path.join(env.RPV_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'rpv'), 'bin'),
    chmod: options.chmod,
  });
  try {
    return { path: file, version: await versionLine(file), source: 'package', ...(fixed ? { fixed } : {}) };
  } catch (err) {
    throw new RpvError(`bundled ${tool} ${file} does not run: ${errorMessage(err)}; set ${ENV_VAR[tool]} or install ${tool} on PATH`);
  }
}

/**
 * Make sure `file` can be executed: nothing to do if it has the run bit; else add it
 * (`chmod`); if that is not allowed, copy it into `cacheDir` (once, keyed by size and mtime)
 * and mark the copy executable.
 */
export async function ensureExecutable(
  file: string,
  options: { cacheDir: string; chmod?: (file: string, mode: number) => Promise<void> },
): Promise<{ file: string; fixed?: 'chmod' | 'copy' }> {
  if (await isExecutableFile(file)) return { file };
  const chmod = options.chmod ?? ((f: string, m: number) => fs.chmod(f, m));
  const st = await fs.stat(file);
  try {
    await chmod(file, st.mode | 0o111);
    if (await isExecutableFile(file)) return { file, fixed: 'chmod' };
  } catch {
    // fall through to the copy
  }
  const target = path.join(options.cacheDir, `${path.basename(file)}-${st.size}-${Math.floor(st.mtimeMs)}`);
  if (await isExecutableFile(target)) return { file: target, fixed: 'copy' };
  await fs.mkdir(options.cacheDir, { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    await fs.copyFile(file, tmp);
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw new RpvError(`${file} lacks its run bit and could not be fixed: chmod refused and copying to ${options.cacheDir} failed (${errorMessage(err)})`);
  }
  return { file: target, fixed: 'copy' };
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    // root passes X_OK when any x bit is set; require the owner's bit like exec would for others.
    return (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function exeName(tool: Tool): string {
  return process.platform === 'win32' ? `${tool}.exe` : tool;
}

/** Folder of `@ffmpeg-installer/<platform>-<arch>` (resp. ffprobe), found through Node's resolver. */
function packageBinaryDir(tool: Tool): string {
  const require = createRequire(import.meta.url);
  const name = `${PACKAGE[tool]}/${process.platform}-${process.arch}`;
  return path.dirname(require.resolve(`${name}/package.json`));
}

/** Run `<bin> -version` and return its first line; rejects when it does not run or exits non-zero. */
export function versionLine(bin: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const child = spawn(bin, ['-version'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const first = out.split('\n')[0]?.trim() ?? '';
      if (code === 0 && first) resolve(first);
      else reject(new Error(`exit ${code ?? signal}${err ? `: ${err.trim().split('\n')[0]}` : ''}`));
    });
  });
}
