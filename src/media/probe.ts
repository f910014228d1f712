/**
 * `probeVideo`: what a video file holds (duration, size, streams) and whether it is usable,
 * from one ffprobe run. Unusable files throw `MediaError` with a machine-readable `reason`,
 * which the converter records as the skip reason.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { RpvError } from '../util/errors.js';
import { resolveFfmpeg } from './ffmpeg.js';

/** Why a media file cannot be used. */
export type MediaErrorReason = 'missing' | 'unreadable' | 'empty' | 'audio-only' | 'truncated' | 'not-media';

export const MEDIA_ERROR_REASONS: readonly MediaErrorReason[] = ['missing', 'unreadable', 'empty', 'audio-only', 'truncated', 'not-media'];

/** A media file that cannot be used; `message` names the file, `reason` says why. */
export class MediaError extends RpvError {
  readonly reason: MediaErrorReason;
  readonly file: string;
  constructor(file: string, reason: MediaErrorReason, detail: string, options: { cause?: unknown } = {}) {
    super(`${file}: ${reason}: ${detail}`, options);
    this.name = 'MediaError';
    this.reason = reason;
    this.file = file;
  }
}

export interface VideoInfo {
  /** Duration of the video stream in seconds (the container's when the stream has none). */
  durationSec: number;
  width: number;
  height: number;
  hasVideo: boolean;
  hasAudio: boolean;
  /** Codec of the video stream, e.g. `h264`. */
  videoCodec?: string;
  /** Average frame rate of the video stream, when known. */
  fps?: number;
  /** Video packets actually present in the file (ffprobe demuxes the whole file). */
  videoPackets?: number;
}

export interface ProbeOptions {
  /**
   * A file is `truncated` when its last video packet ends earlier than its declared duration by
   * more than max(truncatedToleranceSec, 5% of the duration). Default 1 s: containers often
   * declare a duration a frame or two past the last packet.
   */
  truncatedToleranceSec?: number;
  signal?: AbortSignal;
}

interface FfprobeJson {
  streams?: Array<{
    index: number;
    codec_type?: string;
    codec_name?: string;
    width?: number;
    height?: number;
    duration?: string;
    avg_frame_rate?: string;
    nb_frames?: string;
    disposition?: { attached_pic?: number };
  }>;
  format?: { duration?: string; format_name?: string };
  packets?: Array<{ stream_index: number; pts_time?: string; dts_time?: string; duration_time?: string }>;
}

/**
 * Probe `file` with ffprobe. Reads every packet header (demux only, no decode: a few ms for a
 * short clip) so that a file cut short is reported `truncated` even when its header still
 * declares the full duration.
 */
export async function probeVideo(file: string, options: ProbeOptions = {}): Promise<VideoInfo> {
  await checkReadableFile(file);
  const { ffprobePath } = await resolveFfmpeg();
  const args = [
    '-v', 'error',
    '-print_format', 'json',
    '-show_entries', 'format=duration,format_name:stream=index,codec_type,codec_name,width,height,duration,avg_frame_rate,nb_frames,disposition:packet=stream_index,pts_time,dts_time,duration_time',
    file,
  ];
  const { code, stdout, stderr } = await runCapture(ffprobePath, args, options.signal);
  if (code !== 0) {
    const msg = firstErrorLine(stderr, file);
    if (/partial file|end of file|truncat/i.test(stderr) || (/moov atom not found/.test(stderr) && (await looksLikeMp4(file)))) {
      throw new MediaError(file, 'truncated', `file ends early (${msg})`);
    }
    if (/Permission denied/i.test(stderr)) throw new MediaError(file, 'unreadable', msg);
    const summary = lastErrorLine(stderr, file);
    throw new MediaError(file, 'not-media', `ffprobe cannot read it as media (${summary || `exit ${code}`})`);
  }
  let json: FfprobeJson;
  try {
    json = JSON.parse(stdout) as FfprobeJson;
  } catch {
    throw new MediaError(file, 'not-media', 'ffprobe printed no readable description');
  }
  const streams = json.streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  const hasAudio = streams.some((s) => s.codec_type === 'audio');
  if (!video) {
    if (hasAudio) throw new MediaError(file, 'audio-only', 'no video stream (audio only)');
    throw new MediaError(file, 'not-media', `no video or audio stream (container ${json.format?.format_name ?? 'unknown'})`);
  }
  const streamDuration = num(video.duration);
  const formatDuration = num(json.format?.duration);
  const declared = streamDuration ?? formatDuration;
  const packets = (json.packets ?? []).filter((p) => p.stream_index === video.index);
  if (packets.length === 0) {
    throw new MediaError(file, 'truncated', 'the video stream has no packets');
  }
  let lastEnd = 0;
  for (const p of packets) {
    const t = num(p.pts_time) ?? num(p.dts_time);
    if (t === undefined) continue;
    const end = t + (num(p.duration_time) ?? 0);
    if (end > lastEnd) lastEnd = end;
  }
  const fps = rate(video.avg_frame_rate);
  const declaredFrames = num(video.nb_frames);
  const tolerance = Math.max(options.truncatedToleranceSec ?? 1, 0.05 * (declared ?? 0));
  if (declared !== undefined && lastEnd + tolerance < declared) {
    throw new MediaError(file, 'truncated', `declares ${fmt(declared)} s of video but its packets end at ${fmt(lastEnd)} s`);
  }
  if (declaredFrames !== undefined && declaredFrames > 1 && packets.length < 0.9 * declaredFrames - 1) {
    throw new MediaError(file, 'truncated', `declares ${declaredFrames} video frames but holds ${packets.length}`);
  }
  if (/partial file|truncat/i.test(stderr)) throw new MediaError(file, 'truncated', firstErrorLine(stderr, file));
  const durationSec = declared ?? lastEnd;
  const info: VideoInfo = {
    durationSec,
    width: video.width ?? 0,
    height: video.height ?? 0,
    hasVideo: true,
    hasAudio,
    videoPackets: packets.length,
  };
  if (video.codec_name) info.videoCodec = video.codec_name;
  if (fps !== undefined) info.fps = fps;
  if (!(info.width > 0 && info.height > 0)) throw new MediaError(file, 'not-media', 'the video stream has no frame size');
  return info;
}

/** Throws `missing`, `unreadable` or `empty` before ffprobe is asked anything. */
export async function checkReadableFile(file: string): Promise<number> {
  let size: number;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new MediaError(file, 'unreadable', st.isDirectory() ? 'is a directory, not a file' : 'not a regular file');
    size = st.size;
  } catch (err) {
    if (err instanceof MediaError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new MediaError(file, 'missing', 'no such file');
    throw new MediaError(file, 'unreadable', `cannot stat (${code ?? String(err)})`, { cause: err });
  }
  try {
    const handle = await fs.open(file, 'r');
    await handle.close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MediaError(file, 'unreadable', `cannot open for reading (${code ?? String(err)})`, { cause: err });
  }
  if (size === 0) throw new MediaError(file, 'empty', 'zero-length file');
  return size;
}

/** The last line of ffmpeg/ffprobe's stderr (its summary), cleaned like `firstErrorLine`. */
export function lastErrorLine(stderr: string, file: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines[lines.length - 1] ?? '').replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/, '').replace(`${file}: `, '');
}

/**
 * Whether `file` starts like an ISO BMFF (mp4/mov) file: a box size then a known box type. A file
 * that does and whose index (moov) is missing was cut short; one that does not is not media.
 */
export async function looksLikeMp4(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    if (bytesRead < 8) return false;
    return ['ftyp', 'moov', 'mdat', 'free', 'wide', 'skip', 'pnot'].includes(head.toString('latin1', 4, 8));
  } finally {
    await handle.close();
  }
}

/** Spawn a tool, collect stdout/stderr as text; kill it on abort. */
export function runCapture(
  bin: string,
  args: string[],
  signal?: AbortSignal,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const onAbort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new RpvError(`cannot run ${bin}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(abortError(signal));
      else resolve({ code, stdout, stderr });
    });
  });
}

export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('aborted');
  err.name = 'AbortError';
  return err;
}

/** The most telling line of ffmpeg/ffprobe's stderr, without the `[demuxer @ 0x..]` prefix or the file name. */
export function firstErrorLine(stderr: string, file: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  // ffprobe prints "[demuxer @ 0x..] detail" then "file: summary": prefer the detail.
  const line = lines.find((l) => l.startsWith('[')) ?? lines[0] ?? '';
  return line.replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/, '').replace(`${file}: `, '');
}

function num(v: string | undefined): number | undefined {
  if (v === undefined || v === 'N/A') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function rate(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const [a, b] = v.split('/').map(Number);
  if (!a || !b || !Number.isFinite(a / b)) return undefined;
  return a / b;
}

function fmt(sec: number): string {
  return sec.toFixed(2);
}
