import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeVideo, writeSampleExport } from '../../src/index.js';
import { ffprobeSeconds, printfF6, probeMp4 } from '../../src/media/mp4.js';
import { probeWithFfprobe } from '../../src/media/probe.js';
import { ffmpeg, tempDir } from './helpers.js';

let dir: string;
const f = (name: string) => path.join(dir, name);

const tone = (sec: number) => ['-f', 'lavfi', '-i', `sine=frequency=440:duration=${sec}`];
const bars = (size: string, rate: string, sec: number) => ['-f', 'lavfi', '-i', `testsrc=s=${size}:r=${rate}:d=${sec}`];
const x264 = ['-c:v', 'libx264', '-pix_fmt', 'yuv420p'];
const ultrafast = [...x264, '-preset', 'ultrafast'];
const aac = ['-c:a', 'aac', '-shortest'];

/** Clean files probeMp4 must describe exactly as ffprobe does. */
const GOOD: Array<[string, string[]]> = [
  ['ultrafast.mp4', [...bars('64x48', '10', 3), ...ultrafast]], // no B-frames, moov at the end
  ['bframes.mp4', [...bars('64x48', '25', 3.7), ...x264]], // B-frames: ctts + an edit list
  ['bframes-aac-faststart.mp4', [...bars('64x48', '25', 3.7), ...tone(3.7), ...x264, ...aac, '-movflags', '+faststart']],
  ['ultrafast-aac.mp4', [...bars('96x64', '10', 2), ...tone(2), ...ultrafast, ...aac]], // AAC priming: audio edit list
  ['ntsc.mp4', [...bars('80x60', '30000/1001', 3.7), ...tone(3.7), ...x264, ...aac]], // edit rounds past the track total
  ['fps-24000-1001.mp4', [...bars('80x60', '24000/1001', 2.9), ...x264, '-movflags', '+faststart']],
  ['odd-size.mp4', [...bars('90x62', '15', 2.5), ...x264]], // SPS cropping
  ['mpeg4.mp4', [...bars('64x48', '10', 3), '-c:v', 'mpeg4']],
  ['hevc.mp4', [...bars('64x48', '25', 2), '-c:v', 'libx265', '-x265-params', 'log-level=none']],
  ['hevc-hvc1.mp4', [...bars('64x48', '25', 2), ...tone(2), '-c:v', 'libx265', '-x265-params', 'log-level=none', '-tag:v', 'hvc1', ...aac]],
  ['clip.mov', [...bars('64x48', '25', 3.7), ...tone(3.7), ...x264, ...aac]],
  ['timecode.mov', [...bars('64x48', '25', 2), ...x264, '-timecode', '00:00:01:00']], // a tmcd track beside the video
  ['video-timescale-1000.mp4', [...bars('64x48', '30000/1001', 2), ...x264, '-video_track_timescale', '1000']],
  ['audio-longer.mp4', [...bars('64x48', '25', 2), ...tone(3), ...x264, '-c:a', 'aac']],
  ['no-editlist.mp4', [...bars('64x48', '25', 2), ...x264, '-use_editlist', '0']],
];

/** Copy `from` with its (single, version 0) edit's segment duration set to `movieTicks`. */
async function withEditDuration(from: string, to: string, movieTicks: number): Promise<void> {
  const bytes = await fs.readFile(f(from));
  const at = bytes.indexOf('elst');
  expect(at).toBeGreaterThan(0);
  expect(bytes.readUInt32BE(at + 8)).toBe(1); // one entry
  bytes.writeUInt32BE(movieTicks, at + 12);
  await fs.writeFile(f(to), bytes);
}

beforeAll(async () => {
  dir = await tempDir('mp4');
  for (const [name, args] of GOOD) await ffmpeg([...args, f(name)]);
  await ffmpeg(['-i', f('bframes.mp4'), '-t', '2', '-c', 'copy', f('trimmed-copy.mp4')]); // edit shorter than the media
  // mdhd one frame (512 ticks) longer than the samples, as FFmpeg 5.1 writes trimmed-copy.mp4; ffprobe takes the samples' total.
  await withLongerMdhd('bframes.mp4', 'mdhd-longer.mp4', 512);
  // 4 s, keyframe every 5 frames, then its edit list cut to 3.93 s (ends in the last GOP: every
  // sample kept) and to 2 s (FFmpeg drops the samples after the next keyframes: ffprobe reads 56 of 100).
  await ffmpeg([...bars('64x48', '25', 4), ...x264, '-g', '5', f('gop5.mp4')]);
  await withEditDuration('gop5.mp4', 'edit-last-gop.mp4', 3930);
  await withEditDuration('gop5.mp4', 'edit-mid-stream.mp4', 2000);
  await writeSampleExport(f('export'), { clips: 6, dialoguesPerClip: 2 });

  // Files probeMp4 must leave to ffprobe.
  await ffmpeg([...bars('64x48', '10', 2), ...ultrafast, '-movflags', 'frag_keyframe+empty_moov', f('fragmented.mp4')]);
  await ffmpeg([...bars('64x48', '10', 2), '-c:v', 'libvpx', '-b:v', '100k', f('clip.webm')]);
  await ffmpeg([...bars('64x48', '10', 2), ...ultrafast, '-f', 'mpegts', f('clip.ts')]);
  await ffmpeg([...tone(1), '-c:a', 'aac', f('tone.m4a')]);
  await ffmpeg([...bars('64x48', '10', 2), ...bars('64x48', '10', 2), '-map', '0', '-map', '1', ...ultrafast, f('two-videos.mp4')]);
  await ffmpeg(['-ss', '1.3', '-i', f('bframes-aac-faststart.mp4'), '-c', 'copy', f('starts-mid-gop.mp4')]); // edit starts after a keyframe
  const half = async (from: string, to: string) => {
    const bytes = await fs.readFile(f(from));
    await fs.writeFile(f(to), bytes.subarray(0, Math.floor(bytes.length / 2)));
  };
  await half('ultrafast-aac.mp4', 'cut-moov-at-end.mp4');
  await half('bframes-aac-faststart.mp4', 'cut-faststart.mp4');
  await fs.writeFile(f('notes.mp4'), 'not a video\n'.repeat(50));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Copy `from` (one track) with its mdhd duration `extraTicks` above the samples' total, as FFmpeg 5.1 writes a stream-copied trim. */
async function withLongerMdhd(from: string, to: string, extraTicks: number): Promise<void> {
  const bytes = await fs.readFile(f(from));
  const at = bytes.indexOf('mdhd');
  expect(at).toBeGreaterThan(0);
  expect(bytes.indexOf('mdhd', at + 4)).toBe(-1);
  expect(bytes.readUInt8(at + 4)).toBe(0); // version 0: 32-bit duration after 3 32-bit fields
  const stts = bytes.indexOf('stts');
  expect(bytes.readUInt32BE(stts + 8)).toBe(1); // one run: count x delta
  const total = bytes.readUInt32BE(stts + 12) * bytes.readUInt32BE(stts + 16);
  expect(bytes.readUInt32BE(at + 20)).toBeLessThanOrEqual(total + extraTicks);
  bytes.writeUInt32BE(total + extraTicks, at + 20);
  await fs.writeFile(f(to), bytes);
}

/** probeMp4's answer without what ffprobe does not give; fails when it is null. */
async function mp4Facts(file: string): Promise<Record<string, unknown>> {
  const got = await probeMp4(file);
  if (!got) throw new Error(`probeMp4(${file}) returned null`);
  const { prober, lastEndSec, ...facts } = got;
  expect(prober).toBe('mp4');
  expect(lastEndSec).toBeGreaterThan(0);
  return facts;
}

async function ffprobeFacts(file: string): Promise<Record<string, unknown>> {
  const { prober, ...facts } = await probeWithFfprobe(file);
  expect(prober).toBe('ffprobe');
  return facts;
}

describe('probeMp4', () => {
  it.each([...GOOD.map(([name]) => name), 'trimmed-copy.mp4', 'mdhd-longer.mp4', 'edit-last-gop.mp4'])('%s: the same facts as ffprobe', async (name) => {
    expect(await mp4Facts(f(name))).toEqual(await ffprobeFacts(f(name)));
  });

  it('describes the sample export clips as ffprobe does', async () => {
    const videos = (await fs.readdir(f('export/videos'))).sort();
    expect(videos).toHaveLength(6);
    for (const v of videos) {
      const file = f(`export/videos/${v}`);
      expect(await mp4Facts(file)).toEqual(await ffprobeFacts(file));
    }
  });

  it.each([
    'fragmented.mp4',
    'clip.webm',
    'clip.ts',
    'tone.m4a',
    'two-videos.mp4',
    'starts-mid-gop.mp4',
    'edit-mid-stream.mp4',
    'cut-moov-at-end.mp4',
    'cut-faststart.mp4',
    'notes.mp4',
    'no-such-file.mp4',
  ])('%s: null (ffprobe decides)', async (name) => {
    expect(await probeMp4(f(name))).toBeNull();
  });

  it('never throws on corrupted or cut copies of a good file, and never runs long', async () => {
    const good = await fs.readFile(f('bframes-aac-faststart.mp4'));
    const moovAt = good.indexOf('moov');
    expect(moovAt).toBeGreaterThan(0);
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const file = f('fuzz.mp4');
    let answered = 0;
    let slowestMs = 0;
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(good);
      const kind = i % 3;
      if (kind === 0) {
        // Overwrite a few bytes, mostly inside the header (sizes, counts, versions, offsets).
        for (let k = 0; k <= rand(4); k++) bytes[moovAt - 4 + rand(4000)] = rand(256);
      } else if (kind === 1) {
        // Put a large or tiny value into a 32-bit field of the header.
        const at = moovAt - 4 + 4 * rand(1000);
        bytes.writeUInt32BE([0, 1, 0xffffffff, 0x7fffffff, rand(2 ** 31)][rand(5)]!, at);
      }
      const length = kind === 2 ? rand(bytes.length) : bytes.length;
      await fs.writeFile(file, bytes.subarray(0, length));
      const t0 = performance.now();
      const got = await probeMp4(file);
      slowestMs = Math.max(slowestMs, performance.now() - t0);
      if (got) {
        answered++;
        expect(got.videoPackets).toBeGreaterThan(1);
        expect(Number.isFinite(got.durationSec) && got.durationSec > 0).toBe(true);
      }
    }
    // Some corruptions (in free text, unused fields) leave a describable file; most do not.
    expect(answered).toBeGreaterThan(0);
    expect(answered).toBeLessThan(300);
    // Counts are checked against the bytes that hold them before anything is allocated or
    // looped over, so a corrupted count cannot make one probe run long. The bound is loose on
    // purpose (about 0.3 ms is typical; a shared, loaded machine gave 63 ms): it catches a
    // blow-up, not a slowdown, which bench/ measures.
    expect(slowestMs).toBeLessThan(1000);
  });

  it('formats durations as ffprobe prints them (%f: 6 decimals, exact ties to even)', () => {
    expect(ffprobeSeconds(111111, 30000)).toBe(3.7037);
    expect(ffprobeSeconds(47360, 12800)).toBe(3.7);
    expect(printfF6(0.0078125)).toBe('0.007812');
    expect(printfF6(0.0234375)).toBe('0.023438');
    expect(printfF6(2 / 3)).toBe('0.666667');
  });
});

describe('probeVideo with the mp4 reader', () => {
  it('answers clean mp4s in-process with the same facts, and falls back to ffprobe otherwise', async () => {
    const auto = await probeVideo(f('bframes-aac-faststart.mp4'));
    const forced = await probeVideo(f('bframes-aac-faststart.mp4'), { prober: 'ffprobe' });
    expect(auto.prober).toBe('mp4');
    expect(forced.prober).toBe('ffprobe');
    expect({ ...auto, prober: undefined }).toEqual({ ...forced, prober: undefined });
    expect((await probeVideo(f('clip.webm'))).prober).toBe('ffprobe');
    await expect(probeVideo(f('cut-faststart.mp4'))).rejects.toMatchObject({ reason: 'truncated' });
    await expect(probeVideo(f('tone.m4a'))).rejects.toMatchObject({ reason: 'audio-only' });
    await expect(probeVideo(f('edit-mid-stream.mp4'))).rejects.toMatchObject({ reason: 'truncated' });
  });
});
