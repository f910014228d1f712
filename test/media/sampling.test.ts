import { describe, expect, it } from 'vitest';
import { sampleFrameCount, sampleFrameTimes } from '../../src/media/sampling.js';

describe('sampleFrameTimes', () => {
  it('clamps round(duration * fps) between minFrames and maxFrames', () => {
    const cases: Array<[number, number]> = [
      [0.5, 4], [3, 4], [4.4, 4], [4.6, 5], [10, 10], [15.5, 16], [16, 16], [40, 16], [3600, 16],
    ];
    for (const [duration, n] of cases) expect([duration, sampleFrameCount(duration)]).toEqual([duration, n]);
    expect(sampleFrameCount(40, { fps: 0.25, minFrames: 2, maxFrames: 8 })).toBe(8);
    expect(sampleFrameCount(20, { fps: 0.25, minFrames: 2, maxFrames: 8 })).toBe(5);
    expect(sampleFrameCount(2, { fps: 2, minFrames: 1, maxFrames: 32 })).toBe(4);
  });

  it('puts frames at the centres of n equal segments, increasing, inside [0, duration)', () => {
    expect(sampleFrameTimes(4)).toEqual([0.5, 1.5, 2.5, 3.5]);
    expect(sampleFrameTimes(3)).toEqual([0.375, 1.125, 1.875, 2.625]);
    const long = sampleFrameTimes(40);
    expect(long).toHaveLength(16);
    expect(long[0]).toBeCloseTo(1.25, 12);
    expect(long[15]).toBeCloseTo(38.75, 12);
    for (const d of [0.3, 7, 12.345, 59.9, 600]) {
      const t = sampleFrameTimes(d, { fps: 1, minFrames: 4, maxFrames: 16 });
      for (let i = 0; i < t.length; i++) {
        expect(t[i]).toBeCloseTo((d * (i + 0.5)) / t.length, 9);
        expect(t[i]).toBeGreaterThan(0);
        expect(t[i]).toBeLessThan(d);
        if (i > 0) expect(t[i]).toBeGreaterThan(t[i - 1]!);
      }
    }
  });

  it('rejects bad options and durations with messages naming them', () => {
    expect(() => sampleFrameTimes(10, { fps: 0 })).toThrow('sampling: fps must be a positive number, got 0');
    expect(() => sampleFrameTimes(10, { minFrames: 0 })).toThrow('sampling: minFrames must be an integer >= 1, got 0');
    expect(() => sampleFrameTimes(10, { maxFrames: 2.5 })).toThrow('sampling: maxFrames must be an integer >= 1, got 2.5');
    expect(() => sampleFrameTimes(10, { minFrames: 8, maxFrames: 4 })).toThrow('sampling: minFrames (8) must not exceed maxFrames (4)');
    expect(() => sampleFrameTimes(0)).toThrow('sampling: video duration must be a positive number of seconds, got 0');
    expect(() => sampleFrameTimes(Number.NaN)).toThrow('sampling: video duration must be a positive number of seconds, got NaN');
  });
});
