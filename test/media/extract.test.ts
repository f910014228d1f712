import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaError } from '../../src/media/probe.js';
import { buildExtractArgs, extractFrames, extractImage } from '../../src/media/extract.js';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { sampleFrameTimes } from '../../src/media/sampling.js';
import { extractFramesBatch, fpsModeFlagFor, parseShowinfoBatch } from '../../src/media/extract.js';
import { colourName, ffmpeg, makeColourSteps, meanColour, tempDir } from './helpers.js';

let dir: string;
let steps: string;

beforeAll(async () => {
  dir = await tempDir('extract');
  steps = path.join(dir, 'steps.mp4');
  await makeColourSteps(steps);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function extractError(file: string, times: number[]): Promise<MediaError> {
  try {
    await extractFrames(file, times, { frameSize: 8 });
  } catch (err) {
    if (err instanceof MediaError) return err;
    throw err;
  }
  throw new Error('extractFrames did not throw');
}

describe('extractFrames', () => {
  it('returns the frame at or after each time, in order, frameSize x frameSize RGB24', async () => {
    // Frames every 0.1 s; colours change at 1, 2 and 3 s.
    const times = [0, 0.5, 0.95, 0.999, 1.0, 1.5, 1.9, 1.95, 2.0, 2.05, 3.1, 3.9];
    const frames = await extractFrames(steps, times, { frameSize: 16 });
    expect(frames).toHaveLength(times.length);
    for (const frame of frames) expect(frame.length).toBe(16 * 16 * 3);
    expect(frames.map(colourName)).toEqual(['red', 'red', 'green', 'green', 'green', 'green', 'green', 'blue', 'blue', 'blue', 'white', 'white']);
    expect(meanColour(frames[0]!)[0]).toBeGreaterThan(240);
  });

  it('counts time from the first frame of a stream that starts late, with B-frames (MPEG-TS)', async () => {
    const ts = path.join(dir, 'steps.ts');
    await makeColourSteps(ts, ['-preset', 'medium', '-bf', '3', '-f', 'mpegts']);
    const frames = await extractFrames(ts, [0.5, 0.95, 1.0, 1.95, 2.5, 3.5], { frameSize: 8 });
    expect(frames.map(colourName)).toEqual(['red', 'green', 'green', 'blue', 'blue', 'white']);
  });

  it('repeats a frame when several times fall on it', async () => {
    const frames = await extractFrames(steps, [1.01, 1.02, 1.03, 2.5, 2.5], { frameSize: 4 });
    expect(frames.map(colourName)).toEqual(['green', 'green', 'green', 'blue', 'blue']);
    expect(frames[0]).toEqual(frames[2]);
  });

  it('samples a whole clip by the adaptive rule', async () => {
    const frames = await extractFrames(steps, sampleFrameTimes(4), { frameSize: 8 });
    expect(frames.map(colourName)).toEqual(['red', 'green', 'blue', 'white']);
  });

  it('gives the last frame just past the end, and reports a file that ends early as truncated', async () => {
    // The last frame starts at 3.9 s; 3.95 s is still inside the clip.
    expect((await extractFrames(steps, [3.95], { frameSize: 4 })).map(colourName)).toEqual(['white']);
    const err = await extractError(steps, [0.5, 6]);
    expect(err.reason).toBe('truncated');
    expect(err.message).toBe(`${steps}: truncated: no frame at or after 6.00 s nor in the 1 s before it: the video ends early`);
  });

  it('reports a clip cut to half its bytes as truncated', async () => {
    const full = path.join(dir, 'long.mp4');
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=s=64x48:r=10:d=8', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', full]);
    const cut = path.join(dir, 'long-cut.mp4');
    const bytes = await fs.readFile(full);
    await fs.writeFile(cut, bytes.subarray(0, bytes.length >> 1));
    expect(await extractFrames(full, sampleFrameTimes(8), { frameSize: 8 })).toHaveLength(8);
    expect((await extractError(cut, sampleFrameTimes(8))).reason).toBe('truncated');
  });

  it('rejects bad times and sizes, and stops ffmpeg on abort', async () => {
    await expect(extractFrames(steps, [2, 1], { frameSize: 8 })).rejects.toThrow(`extract: ${steps}: times must be non-decreasing, got 2 then 1 at index 1`);
    await expect(extractFrames(steps, [-1], { frameSize: 8 })).rejects.toThrow(`extract: ${steps}: time 0 must be a finite number >= 0, got -1`);
    await expect(extractFrames(steps, [1], { frameSize: 0 })).rejects.toThrow('extract: frameSize must be an integer from 1 to 4096, got 0');
    const controller = new AbortController();
    const pending = extractFrames(steps, [1, 2, 3], { frameSize: 8, signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('builds the same ffmpeg command for a benchmark to run alone', async () => {
    const args = buildExtractArgs(steps, [0.5, 2.5], { frameSize: 8, output: 'null' });
    expect(args.slice(-3)).toEqual(['-f', 'null', '-']);
    const { ffmpegPath } = await resolveFfmpeg();
    const code = await new Promise<number | null>((resolve) => spawn(ffmpegPath, args, { stdio: 'ignore' }).on('close', resolve));
    expect(code).toBe(0);
  });
});

describe('extractFramesBatch', () => {
  it('gives every video of a batch the frames (or the error) it gets alone, and leaves no files', async () => {
    const steps2 = path.join(dir, 'steps-bf.mp4');
    await makeColourSteps(steps2, ['-preset', 'medium', '-bf', '3']);
    const notes = path.join(dir, 'notes.mp4');
    await fs.writeFile(notes, 'not a video\n'.repeat(50));
    const items = [
      { file: steps, timesSec: [0.5, 1.5, 2.5, 3.5] },
      { file: steps2, timesSec: [0.25, 1.0, 1.0, 3.95] }, // 3.95: past the last frame (the tail pass)
      { file: path.join(dir, 'missing.mp4'), timesSec: [1] },
      { file: steps, timesSec: [0.5, 6] }, // ends early
      { file: steps, timesSec: [] },
      { file: steps2, timesSec: sampleFrameTimes(4) },
    ];
    const shmBefore = await fs.readdir('/dev/shm').catch(() => []);
    const batched = await extractFramesBatch(items, { frameSize: 8 });
    const alone = await Promise.all(items.map((it) => extractFrames(it.file, it.timesSec, { frameSize: 8 }).catch((err: unknown) => err)));
    expect(batched).toHaveLength(items.length);
    batched.forEach((got, k) => {
      const want = alone[k];
      if (want instanceof MediaError) {
        expect([k, (got as MediaError).message]).toEqual([k, want.message]);
      } else {
        expect([k, (got as Uint8Array[]).map((f) => Buffer.from(f).toString('hex'))]).toEqual([k, (want as Uint8Array[]).map((f) => Buffer.from(f).toString('hex'))]);
      }
    });
    expect((batched[0] as Uint8Array[]).map(colourName)).toEqual(['red', 'green', 'blue', 'white']);
    expect((batched[1] as Uint8Array[]).map(colourName)).toEqual(['red', 'green', 'green', 'white']);
    expect((batched[2] as MediaError).reason).toBe('missing');
    expect((batched[3] as MediaError).reason).toBe('truncated');
    expect(batched[4]).toEqual([]);
    // A file ffmpeg cannot open fails the batch run: every video is redone alone, same answers.
    const withBad = await extractFramesBatch([items[0]!, { file: notes, timesSec: [1] }, items[5]!], { frameSize: 8 });
    expect((withBad[1] as MediaError).reason).toBe('not-media');
    expect((withBad[0] as Uint8Array[]).map(colourName)).toEqual(['red', 'green', 'blue', 'white']);
    expect((withBad[2] as Uint8Array[]).map(colourName)).toEqual(['red', 'green', 'blue', 'white']);
    expect((await fs.readdir('/dev/shm').catch(() => [])).filter((n) => n.startsWith('.rpv-'))).toEqual(shmBefore.filter((n) => n.startsWith('.rpv-')));
  });

  it('attributes showinfo lines to their video', () => {
    const log = [
      '[showinfo@v1 @ 0x1] config in time_base: 1/10, frame_rate: 10/1',
      '[showinfo@v0 @ 0x2] config in time_base: 1/1000, frame_rate: 25/1',
      '[showinfo@v1 @ 0x1] n:   0 pts:      5 pts_time:0.5 pos: 48 fmt:yuv420p',
      '[showinfo@v0 @ 0x2] n:   0 pts:   1040 pts_time:1.04 pos: 48 fmt:yuv420p',
      '[showinfo@v1 @ 0x1] n:   1 pts:     25 pts_time:2.5 pos: 99 fmt:yuv420p',
    ].join('\n');
    expect(parseShowinfoBatch(log, 3)).toEqual([[1.04], [0.5, 2.5], []]);
  });
});

describe('extractImage', () => {
  it('decodes a PNG or JPEG as one frame', async () => {
    const png = path.join(dir, 'blue.png');
    const jpg = path.join(dir, 'red.jpg');
    await ffmpeg(['-f', 'lavfi', '-i', 'color=c=0x0000FF:s=40x30', '-frames:v', '1', png]);
    await ffmpeg(['-f', 'lavfi', '-i', 'color=c=0xFF0000:s=40x30', '-frames:v', '1', jpg]);
    const a = await extractImage(png, { frameSize: 12 });
    expect(a.length).toBe(12 * 12 * 3);
    expect(colourName(a)).toBe('blue');
    expect(colourName(await extractImage(jpg, { frameSize: 12 }))).toBe('red');
    const text = path.join(dir, 'text.png');
    await fs.writeFile(text, 'not an image');
    await expect(extractImage(text, { frameSize: 12 })).rejects.toMatchObject({ reason: 'not-media' });
    await expect(extractImage(path.join(dir, 'none.png'), { frameSize: 12 })).rejects.toMatchObject({ reason: 'missing' });
  });
});

describe('fpsModeFlagFor', () => {
  it('uses -fps_mode from ffmpeg 5.1 on and -vsync before', () => {
    expect(fpsModeFlagFor('ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers')).toBe('-fps_mode');
    expect(fpsModeFlagFor('ffmpeg version n5.1.2 Copyright')).toBe('-fps_mode');
    expect(fpsModeFlagFor('ffmpeg version 5.0.1 Copyright')).toBe('-vsync');
    expect(fpsModeFlagFor('ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright')).toBe('-vsync');
    expect(fpsModeFlagFor('ffmpeg version N-47683-g0e8eb07980-static https://johnvansickle.com/ffmpeg/')).toBe('-vsync');
  });
});
