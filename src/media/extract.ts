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
 * on stderr so several requested times falling on the same frame are mapped exactly. The frames
 * just before the last time (the fallback for a stream ending before it) are selected only in a
 * second pass, run when the first one finds no frame at or after the last time: in the usual case
 * they would all be scaled, converted and piped for nothing.
 */
import { RpvError } from '../util/errors.js';
import { describeFfmpeg, resolveFfmpeg } from './ffmpeg.js';
import { MediaError, checkReadableFile, looksLikeMp4 } from './probe.js';
import { runBinary, runBinaryOutputs } from './spawn.js';

export interface ExtractOptions {
  /** Output frames are frameSize x frameSize RGB24 (ignored with `native`). */
  frameSize: number;
  /**
   * Keep each frame at its decoded size (no scaling: the vision towers resample it as their
   * processor does, src/vision/preprocess.ts); each frame then carries its `width` and `height`
   * (`SizedFrame`), read from showinfo.
   */
  native?: boolean;
  /** Decoder threads per ffmpeg process. Default 1: the converter runs one process per core. */
  threads?: number;
  /** How far past the last decoded frame a requested time may lie and still get that frame. Default 1 s. */
  endToleranceSec?: number;
  /** Kill ffmpeg and reject when aborted. */
  signal?: AbortSignal;
  /** The caller has just checked the file is a readable, non-empty file (the probe does): skip that. */
  checked?: boolean;
  /**
   * `extractFramesBatch` reads the frames into this buffer: they are views into it, valid only
   * until the next extraction with the same arena (the converter encodes them before that).
   */
  arena?: import('./spawn.js').OutputArena;
}

export interface BuildExtractArgsOptions extends Omit<ExtractOptions, 'signal' | 'checked' | 'arena'> {
  /** `pipe` (default): raw RGB24 frames on stdout. `null`: decode and select but write nothing (benchmarks). */
  output?: 'pipe' | 'null';
  /** Also select the frames in the `endToleranceSec` before the last time. Default false. */
  tail?: boolean;
  /**
   * The option that stops ffmpeg duplicating or dropping frames: `-fps_mode` (ffmpeg >= 5.1) or
   * `-vsync` (older, deprecated since). Default `-vsync`; `extractFrames` picks from the version.
   */
  fpsModeFlag?: '-fps_mode' | '-vsync';
}

/** A frame at its decoded size (`native` extraction): RGB24 bytes with their dimensions. */
export type SizedFrame = Uint8Array & { width: number; height: number };

/** The frame's width and height: its own (native extraction) or `frameSize` squared. */
export function frameDims(frame: Uint8Array, frameSize: number): { width: number; height: number } {
  const f = frame as Partial<SizedFrame>;
  return f.width !== undefined && f.height !== undefined ? { width: f.width, height: f.height } : { width: frameSize, height: frameSize };
}

/** The scale filter of an extraction: none for native frames. */
function scaleFilter(options: { frameSize: number; native?: boolean }): string {
  return options.native ? '' : `,scale=${options.frameSize}:${options.frameSize}:flags=area`;
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

/**
 * The ffmpeg select expression keeping the first frame at or after each time; with `tail`, also
 * every frame in the `endToleranceSec` before the last time (the fallback when the stream ends
 * before reaching it).
 */
export function buildSelectExpression(timesSec: readonly number[], endToleranceSec: number, tail = true): string {
  const prev = 'if(isnan(prev_t),-1,prev_t)';
  const terms = [...new Set(timesSec.map(quantize))].map((t) => `lte(${t},t)*gt(${t},${prev})`);
  if (tail) {
    const last = quantize(timesSec[timesSec.length - 1]!);
    terms.push(`gte(t,${quantize(last - endToleranceSec)})*lt(t,${last})`);
  }
  return `gt(${terms.join('+')},0)`;
}

/** ffmpeg arguments (without the binary) that extract `timesSec` from `file`; see the module comment. */
export function buildExtractArgs(file: string, timesSec: readonly number[], options: BuildExtractArgsOptions): string[] {
  checkTimes(file, timesSec);
  const { frameSize, threads = 1, endToleranceSec = 1, output = 'pipe' } = options;
  checkFrameSize(frameSize);
  const select = buildSelectExpression(timesSec, endToleranceSec, options.tail ?? false);
  const filter = `setpts=PTS-STARTPTS,select='${select}',showinfo${scaleFilter(options)}`;
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
  if (!options.checked) await checkReadableFile(file);
  const { ffmpeg } = await describeFfmpeg();
  const endToleranceSec = options.endToleranceSec ?? 1;
  const fpsModeFlag = fpsModeFlagFor(ffmpeg.version);
  const lastT = quantize(timesSec[timesSec.length - 1]!);
  let run = await extractPass(ffmpeg.path, file, buildExtractArgs(file, timesSec, { ...options, fpsModeFlag }), options, options.signal);
  if (run.decoded.length === 0 || run.decoded[run.decoded.length - 1]! < lastT) {
    // No frame at or after the last time: decode again keeping the frames just before it.
    run = await extractPass(ffmpeg.path, file, buildExtractArgs(file, timesSec, { ...options, fpsModeFlag, tail: true }), options, options.signal);
  }
  return pickFrames(file, timesSec, run.decoded, run.stdout, run.dims, endToleranceSec);
}

/** For each requested time, the view of the first selected frame at or after it (see the module comment). */
function pickFrames(file: string, timesSec: readonly number[], decoded: number[], stdout: Buffer, dims: FrameGeometry, endToleranceSec: number): Uint8Array[] {
  const frameBytes = dims.width * dims.height * 3;
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
      const lastDecoded = decoded[decoded.length - 1]!;
      if (t - lastDecoded > endToleranceSec) {
        throw new MediaError(file, 'truncated', `no frame at or after ${t.toFixed(2)} s nor in the ${endToleranceSec} s before it: the video ends early`);
      }
      index = decoded.length - 1;
    }
    // Views of ffmpeg's output (read-only by the encoders): no copy.
    const view = stdout.subarray(index * frameBytes, (index + 1) * frameBytes);
    frames.push(dims.native ? Object.assign(view, { width: dims.width, height: dims.height }) : view);
  }
  return frames;
}

/** The size of every frame of one output: `frameSize` squared, or the decoded size (native). */
interface FrameGeometry {
  width: number;
  height: number;
  native: boolean;
}

/**
 * The frames' size: `frameSize` squared, or for native extraction the one size showinfo reports
 * for every selected frame (`s:WxH`); a stream whose size changes between them is a MediaError.
 */
function geometryOf(file: string, showinfo: string, options: { frameSize: number; native?: boolean }): FrameGeometry {
  if (!options.native) return { width: options.frameSize, height: options.frameSize, native: false };
  const sizes = new Set<string>();
  for (const line of showinfo.split('\n')) {
    if (!line.includes('showinfo') || !/\bn:\s*\d+\s+pts:/.test(line)) continue;
    const m = /\bs:(\d+)x(\d+)/.exec(line);
    if (m) sizes.add(`${m[1]}x${m[2]}`);
  }
  if (sizes.size > 1) throw new MediaError(file, 'not-media', `the frame size changes within the video (${[...sizes].join(', ')}); re-encode it at one size`);
  const [w, h] = (sizes.values().next().value ?? '0x0').split('x').map(Number) as [number, number];
  return { width: w, height: h, native: true };
}

/** One ffmpeg run: the selected frames' timestamps (from showinfo), their size and their RGB24 bytes. */
async function extractPass(bin: string, file: string, args: string[], options: { frameSize: number; native?: boolean }, signal?: AbortSignal): Promise<{ decoded: number[]; stdout: Buffer; dims: FrameGeometry }> {
  const { code, signal: killedBy, stdout, stderr } = await runBinary(bin, args, signal);
  const decoded = parseShowinfo(stderr);
  if (code !== 0) throw await classifyFailure(file, stderr, code, killedBy);
  const dims = geometryOf(file, stderr, options);
  const frameBytes = dims.width * dims.height * 3;
  if (stdout.length !== decoded.length * frameBytes) {
    throw new RpvError(`extract: ${file}: ffmpeg wrote ${stdout.length} bytes for ${decoded.length} frames of ${frameBytes} bytes`);
  }
  return { decoded, stdout, dims };
}

/** One video of a batch: its file and the times to extract. */
export interface ExtractItem {
  file: string;
  timesSec: readonly number[];
}

/** ffmpeg arguments decoding several videos in one process, video k's frames on file descriptor 3 + k. */
export function buildBatchExtractArgs(items: readonly ExtractItem[], options: Omit<BuildExtractArgsOptions, 'tail'>): string[] {
  const { frameSize, threads = 1, endToleranceSec = 1, output = 'pipe' } = options;
  checkFrameSize(frameSize);
  const inputs: string[] = [];
  const chains: string[] = [];
  const outputs: string[] = [];
  items.forEach(({ file, timesSec }, k) => {
    checkTimes(file, timesSec);
    inputs.push('-threads', String(threads), '-i', file);
    const select = buildSelectExpression(timesSec, endToleranceSec, false);
    chains.push(`[${k}:v:0]setpts=PTS-STARTPTS,select='${select}',showinfo@v${k}${scaleFilter(options)}[o${k}]`);
    outputs.push('-map', `[o${k}]`, options.fpsModeFlag ?? '-vsync', 'passthrough',
      ...(output === 'null' ? ['-f', 'null', '-'] : ['-f', 'rawvideo', '-pix_fmt', 'rgb24', `pipe:${3 + k}`]));
  });
  return ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info', ...inputs, '-filter_complex', chains.join(';'), ...outputs];
}

/**
 * `extractFrames` for several videos in one ffmpeg process: the same frames, with one process
 * start (and one fork of this process) for the whole batch instead of one per video, which for
 * short clips is a large share of the work. Each item gets its frames or the `MediaError` that
 * `extractFrames` would throw for it alone: when the batch run fails as a whole (a file ffmpeg
 * cannot open, a crash) or an item needs the tail frames before its last time, those items are
 * extracted again one by one, so a bad file never costs the others their frames or changes them.
 */
export async function extractFramesBatch(items: readonly ExtractItem[], options: ExtractOptions): Promise<Array<Uint8Array[] | MediaError>> {
  const alone = async (item: ExtractItem): Promise<Uint8Array[] | MediaError> => {
    try {
      return await extractFrames(item.file, item.timesSec, options);
    } catch (err) {
      if (err instanceof MediaError) return err;
      throw err;
    }
  };
  const unreadable = new Map<ExtractItem, MediaError>();
  if (!options.checked) {
    for (const item of items) {
      await checkReadableFile(item.file).catch((err: unknown) => {
        if (!(err instanceof MediaError)) throw err;
        unreadable.set(item, err);
      });
    }
  }
  const batch = items.filter((item) => item.timesSec.length > 0 && !unreadable.has(item));
  // Windows: ffmpeg's extra output descriptors (pipe:3 ...) are not inherited there; one by one.
  if (batch.length <= 1 || process.platform === 'win32') {
    const results: Array<Uint8Array[] | MediaError> = [];
    for (const item of items) results.push(unreadable.get(item) ?? (await alone(item)));
    return results;
  }
  const { ffmpeg } = await describeFfmpeg();
  const endToleranceSec = options.endToleranceSec ?? 1;
  const args = buildBatchExtractArgs(batch, { ...options, fpsModeFlag: fpsModeFlagFor(ffmpeg.version) });
  const { code, signal, outputs, stderr } = await runBinaryOutputs(ffmpeg.path, args, batch.length, options.signal, options.arena);
  const decoded = parseShowinfoBatch(stderr, batch.length);
  const infoLines = showinfoLinesBatch(stderr, batch.length);
  const byItem = new Map<ExtractItem, Uint8Array[] | null>();
  if (code === 0 && signal === null) {
    batch.forEach((item, k) => {
      const times = decoded[k]!;
      const bytes = outputs[k]!;
      const lastT = quantize(item.timesSec[item.timesSec.length - 1]!);
      let dims: FrameGeometry;
      try {
        dims = geometryOf(item.file, infoLines[k]!, options);
      } catch {
        return byItem.set(item, null); // redone alone, which reports it
      }
      const frameBytes = dims.width * dims.height * 3;
      // Anything short of a clean answer for this item: it is redone alone.
      if (bytes.length !== times.length * frameBytes || times.length === 0 || times[times.length - 1]! < lastT) return byItem.set(item, null);
      byItem.set(item, pickFrames(item.file, item.timesSec, times, bytes, dims, endToleranceSec));
    });
  }
  const results: Array<Uint8Array[] | MediaError> = [];
  for (const item of items) results.push(unreadable.get(item) ?? byItem.get(item) ?? (await alone(item)));
  return results;
}

/** The showinfo lines of each video k of a batch (`showinfo@v<k>`), as a single run would log them. */
function showinfoLinesBatch(stderr: string, count: number): string[] {
  const lines: string[][] = Array.from({ length: count }, () => []);
  for (const line of stderr.split('\n')) {
    const m = /^\[showinfo@v(\d+) @/.exec(line);
    if (m && Number(m[1]) < count) lines[Number(m[1])]!.push(line.replace(/^\[showinfo@v\d+/, '[Parsed_showinfo'));
  }
  return lines.map((l) => l.join('\n'));
}

/** `parseShowinfo` for a batch: the kept frames' timestamps of video k, from `showinfo@v<k>`. */
export function parseShowinfoBatch(stderr: string, count: number): number[][] {
  return showinfoLinesBatch(stderr, count).map(parseShowinfo);
}

/** Decode the first frame of an image (jpg, png, webp, ...) or video as one RGB24 frame (a `SizedFrame` with `native`). */
export async function extractImage(file: string, options: Omit<ExtractOptions, 'endToleranceSec'>): Promise<Uint8Array> {
  const { frameSize } = options;
  checkFrameSize(frameSize);
  await checkReadableFile(file);
  const { ffmpegPath } = await resolveFfmpeg();
  const args = [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', options.native ? 'info' : 'error',
    '-threads', String(options.threads ?? 1),
    '-i', file,
    '-an', '-sn', '-dn',
    '-frames:v', '1',
    '-vf', options.native ? 'showinfo' : `scale=${frameSize}:${frameSize}:flags=area`,
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ];
  const { code, signal, stdout, stderr } = await runBinary(ffmpegPath, args, options.signal);
  if (code !== 0) throw await classifyFailure(file, stderr, code, signal);
  const dims = geometryOf(file, stderr, options);
  const frameBytes = dims.width * dims.height * 3;
  if (frameBytes === 0 || stdout.length < frameBytes) throw new MediaError(file, 'not-media', 'no picture decoded');
  const frame = stdout.subarray(0, frameBytes).slice();
  return dims.native ? Object.assign(frame, { width: dims.width, height: dims.height }) : frame;
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

