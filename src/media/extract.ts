/**
 * Frame extraction: one ffmpeg process per video that decodes the file once, front to back,
 * and keeps only the frames at the requested times (no per-frame seeking, which measured 3–13x
 * slower). Frames come back as RGB24, `frameSize x frameSize` (the whole picture scaled, aspect
 * ratio not kept), in temporal order.
 *
 * How a frame is chosen for a requested time T: the first decoded frame whose timestamp is at or
 * after T (timestamps counted from the stream's first frame). Only when T lies past the last
 * decoded frame by at most `endToleranceSec` is the last frame used; further than that the file
 * ended early and extraction throws `MediaError` reason `truncated`.
 *
 * The selection happens inside ffmpeg (`select` with an expression over the requested times), so
 * only the chosen frames are scaled and piped; `showinfo` reports each chosen frame's timestamp
 * on stderr so several requested times falling on the same frame are mapped exactly.
 */
import { RpvError } from '../util/errors.js';
import { describeFfmpeg, resolveFfmpeg } from './ffmpeg.js';
import { MediaError, checkReadableFile, looksLikeMp4 } from './probe.js';
import { runBinary } from './run.js';

export interface ExtractOptions {
  /** Output frames are frameSize x frameSize RGB24. */
  frameSize: number;
  /** Decoder threads per ffmpeg process. Default 1: the converter runs one process per core. */
  threads?: number;
  /** How far past the last decoded frame a requested time may lie and still get that frame. Default 1 s. */
  endToleranceSec?: number;
  /** Kill ffmpeg and reject when aborted. */
  signal?: AbortSignal;
}

export interface BuildExtractArgsOptions extends Omit<ExtractOptions, 'signal'> {
  /** `pipe` (default): raw RGB24 frames on stdout. `null`: decode and select but write nothing (benchmarks). */
  output?: 'pipe' | 'null';
  /**
   * The option that stops ffmpeg duplicating or dropping frames: `-fps_mode` (ffmpeg >= 5.1) or
   * `-vsync` (older, deprecated since). Default `-vsync`; `extractFrames` picks from the version.
   */
  fpsModeFlag?: '-fps_mode' | '-vsync';
}

/** `-fps_mode` for ffmpeg >= 5.1, else `-vsync` (git snapshots without a version number: `-vsync`). */
export function fpsModeFlagFor(versionLine: string): '-fps_mode' | '-vsync' {
  const m = /version n?(\d+)\.(\d+)/.exec(versionLine);
  if (!m) return '-vsync';
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 1) ? '-fps_mode' : '-vsync';
}

/** Rounded to microseconds so ffmpeg's expression and our mapping compare the very same numbers. */
function quantize(t: number): number {
  return Number(t.toFixed(6));
}

/** The ffmpeg select expression keeping the first frame at or after each time (and the tail window). */
export function buildSelectExpression(timesSec: readonly number[], endToleranceSec: number): string {
  const prev = 'if(isnan(prev_t),-1,prev_t)';
  const terms = [...new Set(timesSec.map(quantize))].map((t) => `lte(${t},t)*gt(${t},${prev})`);
  const last = quantize(timesSec[timesSec.length - 1]!);
  // Frames just before the last time: the fallback if the stream ends before reaching it.
  terms.push(`gte(t,${quantize(last - endToleranceSec)})*lt(t,${last})`);
  return `gt(${terms.join('+')},0)`;
}

/** ffmpeg arguments (without the binary) that extract `timesSec` from `file`; see the module comment. */
export function buildExtractArgs(file: string, timesSec: readonly number[], options: BuildExtractArgsOptions): string[] {
  checkTimes(file, timesSec);
  const { frameSize, threads = 1, endToleranceSec = 1, output = 'pipe' } = options;
  checkFrameSize(frameSize);
  const select = buildSelectExpression(timesSec, endToleranceSec);
  const filter = `setpts=PTS-STARTPTS,select='${select}',showinfo,scale=${frameSize}:${frameSize}:flags=area`;
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info',
    '-threads', String(threads),
    '-i', file,
    '-an', '-sn', '-dn',
    '-vf', filter,
    options.fpsModeFlag ?? '-vsync', 'passthrough',
    ...(output === 'null' ? ['-f', 'null', '-'] : ['-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']),
  ];
}

/**
 * Decode `file` once and return one RGB24 frame per requested time (`timesSec` non-decreasing),
 * exactly `timesSec.length` of them, in order.
 */
export async function extractFrames(file: string, timesSec: readonly number[], options: ExtractOptions): Promise<Uint8Array[]> {
  checkTimes(file, timesSec);
  if (timesSec.length === 0) return [];
  await checkReadableFile(file);
  const { ffmpeg } = await describeFfmpeg();
  const endToleranceSec = options.endToleranceSec ?? 1;
  const args = buildExtractArgs(file, timesSec, { ...options, fpsModeFlag: fpsModeFlagFor(ffmpeg.version) });
  const frameBytes = options.frameSize * options.frameSize * 3;
  const { code, signal, stdout, stderr } = await runBinary(ffmpeg.path, args, options.signal);
  const decoded = parseShowinfo(stderr);
  if (code !== 0) throw await classifyFailure(file, stderr, code, signal);
  if (stdout.length !== decoded.length * frameBytes) {
    throw new RpvError(`extract: ${file}: ffmpeg wrote ${stdout.length} bytes for ${decoded.length} frames of ${frameBytes} bytes`);
  }
  if (decoded.length === 0) {
    throw new MediaError(file, 'truncated', `no frame decoded at or after ${quantize(timesSec[0]!)} s`);
  }
  const frames: Uint8Array[] = [];
  let j = 0;
  for (const time of timesSec) {
    const t = quantize(time);
    while (j < decoded.length && decoded[j]! < t) j++;
    let index = j;
    if (j === decoded.length) {
      const lastT = decoded[decoded.length - 1]!;
      if (t - lastT > endToleranceSec) {
        throw new MediaError(file, 'truncated', `no frame at or after ${t.toFixed(2)} s nor in the ${endToleranceSec} s before it: the video ends early`);
      }
      index = decoded.length - 1;
    }
    frames.push(stdout.subarray(index * frameBytes, (index + 1) * frameBytes).slice());
  }
  return frames;
}

/** Decode the first frame of an image (jpg, png, webp, ...) or video as one RGB24 frame. */
export async function extractImage(file: string, options: Omit<ExtractOptions, 'endToleranceSec'>): Promise<Uint8Array> {
  const { frameSize } = options;
  checkFrameSize(frameSize);
  await checkReadableFile(file);
  const { ffmpegPath } = await resolveFfmpeg();
  const args = [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error',
    '-threads', String(options.threads ?? 1),
    '-i', file,
    '-an', '-sn', '-dn',
    '-frames:v', '1',
    '-vf', `scale=${frameSize}:${frameSize}:flags=area`,
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ];
  const { code, signal, stdout, stderr } = await runBinary(ffmpegPath, args, options.signal);
  if (code !== 0) throw await classifyFailure(file, stderr, code, signal);
  const frameBytes = frameSize * frameSize * 3;
  if (stdout.length < frameBytes) throw new MediaError(file, 'not-media', 'no picture decoded');
  return stdout.subarray(0, frameBytes).slice();
}

/** Timestamps (seconds from the first frame) of the frames `select` passed, from showinfo's log. */
export function parseShowinfo(stderr: string): number[] {
  let timeBase: number | undefined;
  const times: number[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.includes('showinfo')) continue;
    const tb = /config in time_base: (\d+)\/(\d+)/.exec(line);
    if (tb) {
      timeBase = Number(tb[1]) / Number(tb[2]);
      continue;
    }
    const m = /\bn:\s*\d+\s+pts:\s*(-?\d+)\s+pts_time:\s*(\S+)/.exec(line);
    if (!m) continue;
    times.push(timeBase !== undefined ? Number(m[1]) * timeBase : Number(m[2]));
  }
  return times;
}

async function classifyFailure(file: string, stderr: string, code: number | null, signal: NodeJS.Signals | null = null): Promise<MediaError> {
  if (signal || (code !== null && code > 128)) {
    return new MediaError(file, 'unreadable', `ffmpeg crashed decoding it (${signal ?? `exit ${code}`}); some static builds do on MPEG-TS: set FFMPEG_PATH to another build`);
  }
  const detail = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.includes('showinfo'))
    .slice(-1)[0]
    ?.replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/, '')
    .replace(`${file}: `, '') ?? `exit ${code}`;
  if (/partial file|end of file/i.test(stderr) || (/moov atom not found/.test(stderr) && (await looksLikeMp4(file)))) {
    return new MediaError(file, 'truncated', `file ends early (${detail})`);
  }
  if (/Permission denied/i.test(stderr)) return new MediaError(file, 'unreadable', detail);
  if (/does not contain any stream|Output file #0 does not contain|matches no streams/i.test(stderr)) {
    return new MediaError(file, 'audio-only', `no video stream (${detail})`);
  }
  return new MediaError(file, 'not-media', `ffmpeg cannot decode it (${detail})`);
}

function checkTimes(file: string, timesSec: readonly number[]): void {
  for (let i = 0; i < timesSec.length; i++) {
    const t = timesSec[i]!;
    if (!(Number.isFinite(t) && t >= 0)) throw new RpvError(`extract: ${file}: time ${i} must be a finite number >= 0, got ${t}`);
    if (i > 0 && t < timesSec[i - 1]!) throw new RpvError(`extract: ${file}: times must be non-decreasing, got ${timesSec[i - 1]} then ${t} at index ${i}`);
  }
}

function checkFrameSize(frameSize: number): void {
  if (!(Number.isInteger(frameSize) && frameSize >= 1 && frameSize <= 4096)) {
    throw new RpvError(`extract: frameSize must be an integer from 1 to 4096, got ${frameSize}`);
  }
}

