/**
 * `probeVideo`: what a video file holds (duration, size, streams) and whether it is usable:
 * read in-process from a clean mp4/mov header (`probeMp4`), else from one ffprobe run.
 * Unusable files throw `MediaError` with a machine-readable `reason`, which the converter
 * records as the skip reason.
 */
import fsSync, { promises as fs } from 'node:fs';
import { RpvError } from '../util/errors.js';
import { runCapture } from './spawn.js';

import { resolveFfmpeg } from './ffmpeg.js';
import { probeMp4 } from './mp4.js';

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
  /** Video packets actually present in the file (the probe demuxes the whole file). */
  videoPackets?: number;
  /**
   * Which reader answered: `mp4` (the in-process mp4/mov header reader), `ffprobe`, or `ffmpeg`
   * when ffprobe crashed on the file.
   */
  prober?: 'mp4' | 'ffprobe' | 'ffmpeg';
}

export interface ProbeOptions {
  /**
   * A file is `truncated` when its last video packet ends earlier than its declared duration by
   * more than max(truncatedToleranceSec, 5% of the duration). Default 1 s: containers often
   * declare a duration a frame or two past the last packet.
   */
  truncatedToleranceSec?: number;
  /**
   * `auto` (default): read a clean mp4/mov header in-process and run ffprobe only for anything
   * else (other containers, fragmented or damaged files, and every error). `ffprobe`: always
   * run ffprobe (the answers are the same; for comparisons and benchmarks).
   */
  prober?: 'auto' | 'ffprobe';
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
 * Probe `file`: from its mp4/mov header when `probeMp4` is sure of every answer (the same
 * answers ffprobe gives, without a process), else with ffprobe (`probeWithFfprobe`).
 */
export async function probeVideo(file: string, options: ProbeOptions = {}): Promise<VideoInfo> {
  await checkReadableFile(file);
  if ((options.prober ?? 'auto') === 'auto') {
    options.signal?.throwIfAborted();
    const mp4 = await probeMp4(file);
    if (mp4) {
      try {
        return finishProbe(file, {
          declaredSec: mp4.durationSec,
          declaredFrames: mp4.videoPackets,
          packets: mp4.videoPackets,
          lastEndSec: mp4.lastEndSec,
          width: mp4.width,
          height: mp4.height,
          hasAudio: mp4.hasAudio,
          codec: mp4.videoCodec,
          fps: mp4.fps,
          partialFile: undefined,
          prober: 'mp4',
        }, options);
      } catch (err) {
        // Let ffprobe judge (and word) whatever the header reader would reject.
        if (!(err instanceof MediaError)) throw err;
      }
    }
  }
  return probeWithFfprobe(file, options);
}

/**
 * Probe `file` with ffprobe. Reads every packet header (demux only, no decode: a few ms for a
 * short clip) so that a file cut short is reported `truncated` even when its header still
 * declares the full duration.
 */
export async function probeWithFfprobe(file: string, options: ProbeOptions = {}): Promise<VideoInfo> {
  await checkReadableFile(file);
  const { ffprobePath, ffmpegPath } = await resolveFfmpeg();
  const args = [
    '-v', 'error',
    '-print_format', 'json',
    '-show_entries', 'format=duration,format_name:stream=index,codec_type,codec_name,width,height,duration,avg_frame_rate,nb_frames,disposition:packet=stream_index,pts_time,dts_time,duration_time',
    file,
  ];
  const { code, signal, stdout, stderr } = await runCapture(ffprobePath, args, options.signal);
  if (signal || (code !== null && code > 128)) {
    // ffprobe crashed, not the file's fault: some static builds (johnvansickle's, as shipped in
    // @ffprobe-installer) die with SIGSEGV on every MPEG-TS file. Ask ffmpeg instead.
    return probeWithFfmpeg(file, ffmpegPath, options);
  }
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
  const packets = (json.packets ?? []).filter((p) => p.stream_index === video.index);
  let lastEnd = 0;
  for (const p of packets) {
    const t = num(p.pts_time) ?? num(p.dts_time);
    if (t === undefined) continue;
    const end = t + (num(p.duration_time) ?? 0);
    if (end > lastEnd) lastEnd = end;
  }
  return finishProbe(file, {
    declaredSec: num(video.duration) ?? num(json.format?.duration),
    declaredFrames: num(video.nb_frames),
    packets: packets.length,
    lastEndSec: lastEnd,
    width: video.width ?? 0,
    height: video.height ?? 0,
    hasAudio,
    codec: video.codec_name,
    fps: rate(video.avg_frame_rate),
    partialFile: /partial file|truncat/i.test(stderr) ? firstErrorLine(stderr, file) : undefined,
    prober: 'ffprobe',
  }, options);
}

interface ProbeFacts {
  /** Duration the file declares for the video (stream, else container). */
  declaredSec: number | undefined;
  declaredFrames: number | undefined;
  /** Video packets actually present. */
  packets: number;
  /** End (pts + duration) of the last video packet, seconds. */
  lastEndSec: number;
  width: number;
  height: number;
  hasAudio: boolean;
  codec: string | undefined;
  fps: number | undefined;
  /** The demuxer's complaint about a cut file, if any. */
  partialFile: string | undefined;
  prober: 'mp4' | 'ffprobe' | 'ffmpeg';
}

/** The truncation checks and the result, shared by both probers. */
function finishProbe(file: string, f: ProbeFacts, options: ProbeOptions): VideoInfo {
  if (f.packets === 0) throw new MediaError(file, 'truncated', 'the video stream has no packets');
  const tolerance = Math.max(options.truncatedToleranceSec ?? 1, 0.05 * (f.declaredSec ?? 0));
  if (f.declaredSec !== undefined && f.lastEndSec + tolerance < f.declaredSec) {
    throw new MediaError(file, 'truncated', `declares ${fmt(f.declaredSec)} s of video but its packets end at ${fmt(f.lastEndSec)} s`);
  }
  if (f.declaredFrames !== undefined && f.declaredFrames > 1 && f.packets < 0.9 * f.declaredFrames - 1) {
    throw new MediaError(file, 'truncated', `declares ${f.declaredFrames} video frames but holds ${f.packets}`);
  }
  if (f.partialFile) throw new MediaError(file, 'truncated', f.partialFile);
  if (!(f.width > 0 && f.height > 0)) throw new MediaError(file, 'not-media', 'the video stream has no frame size');
  // ffmpeg's tty demuxer renders any text file (by extension) as an "ansi" video.
  if (f.codec === 'ansi') throw new MediaError(file, 'not-media', 'a text file, not a video');
  const info: VideoInfo = {
    durationSec: f.declaredSec ?? f.lastEndSec,
    width: f.width,
    height: f.height,
    hasVideo: true,
    hasAudio: f.hasAudio,
    videoPackets: f.packets,
    prober: f.prober,
  };
  if (f.codec) info.videoCodec = f.codec;
  if (f.fps !== undefined) info.fps = f.fps;
  return info;
}

/**
 * The same facts from ffmpeg alone, for when ffprobe crashes: the input description on stderr
 * (duration, streams) and, from copying the first video stream to the `framecrc` muxer, every
 * video packet's timestamp and duration.
 */
export async function probeWithFfmpeg(file: string, ffmpegPath: string, options: ProbeOptions = {}): Promise<VideoInfo> {
  const args = ['-hide_banner', '-nostdin', '-nostats', '-i', file, '-map', '0:v:0', '-c', 'copy', '-f', 'framecrc', '-'];
  const { code, signal, stdout, stderr } = await runCapture(ffmpegPath, args, options.signal);
  const input = stderr.split(/\nOutput #0|\nStream mapping:/)[0] ?? '';
  const streams = input.split('\n').filter((l) => /^\s*Stream #\d+:\d+/.test(l));
  const videoLine = streams.find((l) => /: Video: /.test(l) && !/\(attached pic\)/.test(l));
  const hasAudio = streams.some((l) => /: Audio: /.test(l));
  if (signal || (code !== null && code > 128)) {
    throw new MediaError(file, 'unreadable', `both ffprobe and ffmpeg crashed reading it (${signal ?? `exit ${code}`}); set FFMPEG_PATH/FFPROBE_PATH to another build`);
  }
  if (!videoLine) {
    if (hasAudio) throw new MediaError(file, 'audio-only', 'no video stream (audio only)');
    if (/moov atom not found/.test(stderr) && (await looksLikeMp4(file))) throw new MediaError(file, 'truncated', 'file ends early (moov atom not found)');
    throw new MediaError(file, 'not-media', `ffmpeg cannot read it as media (${lastErrorLine(stderr, file) || `exit ${code}`})`);
  }
  const duration = /Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)/.exec(input);
  const size = /, (\d+)x(\d+)[ ,\[]/.exec(videoLine) ?? /, (\d+)x(\d+)$/.exec(videoLine);
  const fps = /, ([\d.]+) fps/.exec(videoLine);
  let tb = 0;
  let packets = 0;
  let lastEnd = 0;
  for (const line of stdout.split('\n')) {
    const t = /^#tb 0: (\d+)\/(\d+)/.exec(line);
    if (t) tb = Number(t[1]) / Number(t[2]);
    const m = /^0,\s*(-?\d+),\s*(-?\d+),\s*(\d+),/.exec(line);
    if (!m) continue;
    packets++;
    const end = (Number(m[2]) + Number(m[3])) * tb;
    if (end > lastEnd) lastEnd = end;
  }
  return finishProbe(file, {
    declaredSec: duration ? Number(duration[1]) * 3600 + Number(duration[2]) * 60 + Number(duration[3]) : undefined,
    declaredFrames: undefined,
    packets,
    lastEndSec: lastEnd,
    width: size ? Number(size[1]) : 0,
    height: size ? Number(size[2]) : 0,
    hasAudio,
    codec: /: Video: (\w+)/.exec(videoLine)?.[1],
    fps: fps ? Number(fps[1]) : undefined,
    partialFile: /partial file/i.test(stderr) ? 'partial file' : undefined,
    prober: 'ffmpeg',
  }, options);
}

/**
 * Throws `missing`, `unreadable` or `empty` before ffprobe is asked anything. Synchronous calls
 * (a stat, an open and a close of a local file) cost less than their thread-pool round trips.
 */
export async function checkReadableFile(file: string): Promise<number> {
  let size: number;
  try {
    const st = fsSync.statSync(file);
    if (!st.isFile()) throw new MediaError(file, 'unreadable', st.isDirectory() ? 'is a directory, not a file' : 'not a regular file');
    size = st.size;
  } catch (err) {
    if (err instanceof MediaError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new MediaError(file, 'missing', 'no such file');
    throw new MediaError(file, 'unreadable', `cannot stat (${code ?? String(err)})`, { cause: err });
  }
  try {
    fsSync.closeSync(fsSync.openSync(file, 'r'));
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
