import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeVideo } from '../../src/index.js';
import { MediaError } from '../../src/media/probe.js';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { probeWithFfmpeg } from '../../src/media/probe.js';
import { ffmpeg, tempDir } from './helpers.js';

let dir: string;
const f = (name: string) => path.join(dir, name);

/** The error probeVideo throws for `file`, or a failure when it does not throw. */
async function probeError(file: string): Promise<MediaError> {
  try {
    await probeVideo(file);
  } catch (err) {
    if (err instanceof MediaError) return err;
    throw err;
  }
  throw new Error(`probeVideo(${file}) did not throw`);
}

beforeAll(async () => {
  dir = await tempDir('probe');
  // 6 s, 10 fps, with a tone; moov at the end (ffmpeg's default) and at the start (+faststart).
  const src = ['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=10:d=6', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=6',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest'];
  await ffmpeg([...src, f('good.mp4')]);
  await ffmpeg([...src, '-movflags', '+faststart', f('faststart.mp4')]);
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=96x64:r=10:d=6', '-c:v', 'libvpx', '-b:v', '200k', '-deadline', 'realtime', f('good.webm')]);
  await ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', '-c:a', 'aac', f('tone.m4a')]);
  const half = async (from: string, to: string) => {
    const bytes = await fs.readFile(f(from));
    await fs.writeFile(f(to), bytes.subarray(0, Math.floor(bytes.length / 2)));
  };
  await half('good.mp4', 'cut-moov-at-end.mp4');
  await half('faststart.mp4', 'cut-faststart.mp4');
  await half('good.webm', 'cut.webm');
  // MPEG-TS starts its clock at 1.4 s; the static ffprobe of @ffprobe-installer crashes on it (probe falls back to ffmpeg).
  await ffmpeg([...src.slice(0, 8), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', '-f', 'mpegts', f('good.ts')]);
  await half('good.ts', 'cut.ts');
  await fs.writeFile(f('empty.mp4'), '');
  await fs.writeFile(f('notes.mp4'), 'these are not the frames you are looking for\n'.repeat(20));
  await fs.mkdir(f('folder.mp4'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('probeVideo', () => {
  it('reports duration, size and streams of good files', async () => {
    expect(await probeVideo(f('good.mp4'))).toMatchObject({ durationSec: 6, width: 96, height: 64, hasVideo: true, hasAudio: true, fps: 10 });
    expect(await probeVideo(f('faststart.mp4'))).toMatchObject({ durationSec: 6, hasAudio: true });
    const webm = await probeVideo(f('good.webm'));
    expect(webm).toMatchObject({ width: 96, height: 64, hasVideo: true, hasAudio: false });
    expect(webm.durationSec).toBeCloseTo(6, 1);
  });

  it.each([
    ['nothing-here.mp4', 'missing', 'no such file'],
    ['folder.mp4', 'unreadable', 'is a directory, not a file'],
    ['empty.mp4', 'empty', 'zero-length file'],
    ['tone.m4a', 'audio-only', 'no video stream (audio only)'],
    ['notes.mp4', 'not-media', 'ffprobe cannot read it as media (Invalid data found when processing input)'],
    ['cut-moov-at-end.mp4', 'truncated', 'file ends early (moov atom not found)'],
  ])('%s: %s', async (name, reason, detail) => {
    const err = await probeError(f(name));
    expect(err.reason).toBe(reason);
    expect(err.message).toBe(`${f(name)}: ${reason}: ${detail}`);
  });

  it('reads MPEG-TS (through ffmpeg when ffprobe crashes on it)', async () => {
    const ts = await probeVideo(f('good.ts'));
    expect(ts).toMatchObject({ width: 96, height: 64, hasVideo: true, hasAudio: true, fps: 10 });
    expect(ts.durationSec).toBeCloseTo(6, 0);
    // MPEG-TS declares no duration: a cut stream is a shorter, still valid, stream.
    const cut = await probeVideo(f('cut.ts'));
    expect(cut.durationSec).toBeGreaterThan(2);
    expect(cut.durationSec).toBeLessThan(4.5);
  });

  it('gives the same answers from ffmpeg alone (the fallback prober)', async () => {
    const { ffmpegPath } = await resolveFfmpeg();
    const viaFfmpeg = async (name: string) => probeWithFfmpeg(f(name), ffmpegPath).catch((err: MediaError) => err.reason);
    expect(await viaFfmpeg('good.mp4')).toMatchObject({ width: 96, height: 64, hasAudio: true, videoPackets: 60, prober: 'ffmpeg' });
    expect(await viaFfmpeg('good.webm')).toMatchObject({ width: 96, height: 64, hasAudio: false });
    expect(await viaFfmpeg('tone.m4a')).toBe('audio-only');
    expect(await viaFfmpeg('cut-faststart.mp4')).toBe('truncated');
    expect(await viaFfmpeg('cut-moov-at-end.mp4')).toBe('truncated');
    expect(await viaFfmpeg('notes.mp4')).toBe('not-media');
  });

  it('finds a file cut short even when its header declares the full duration', async () => {
    const cut = await probeError(f('cut-faststart.mp4'));
    expect(cut.reason).toBe('truncated');
    expect(cut.message).toMatch(/^.*cut-faststart\.mp4: truncated: declares 6\.00 s of video but its packets end at [0-9.]+ s$/);
    const webm = await probeError(f('cut.webm'));
    expect(webm.reason).toBe('truncated');
  });
});
