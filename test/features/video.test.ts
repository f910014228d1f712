import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridEncoder } from '../../src/features/grid.js';
import { encodeVideo } from '../../src/features/video.js';
import { sampleFrameTimes } from '../../src/media/sampling.js';
import { ffmpeg, makeColourSteps } from '../media/helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-encode-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('encodeVideo', () => {
  it('samples, extracts and encodes a video; an image becomes one frame at t=0', async () => {
    const encoder = new GridEncoder({ cells: 2 });
    const clip = path.join(dir, 'steps.mp4');
    await makeColourSteps(clip);
    const v = await encodeVideo(clip, { encoder, frameSize: 16, sampling: { fps: 2, minFrames: 4, maxFrames: 16 } });
    expect(v.durationSec).toBe(4);
    expect(v.numFrames).toBe(8);
    expect(Array.from(v.frameTimes)).toEqual(sampleFrameTimes(4, { fps: 2 }));
    expect(v.features).toHaveLength(8 * encoder.featureDim);
    // Frame 0 (0.25 s) is red: mean_r of cell 0 is +1 (within compression), mean_g -1.
    expect(v.features[0]).toBeGreaterThan(0.9);
    expect(v.features[1]).toBeLessThan(-0.9);

    const png = path.join(dir, 'green.png');
    await ffmpeg(['-f', 'lavfi', '-i', 'color=c=0x00FF00:s=20x20', '-frames:v', '1', png]);
    const img = await encodeVideo(png, { encoder, frameSize: 16 });
    expect([img.durationSec, img.numFrames, Array.from(img.frameTimes)]).toEqual([null, 1, [0]]);
    expect(img.features[1]).toBeGreaterThan(0.9);
    await expect(encodeVideo(path.join(dir, 'gone.mp4'), { encoder, frameSize: 16 })).rejects.toMatchObject({ reason: 'missing' });
  });
});
