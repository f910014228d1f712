import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { outputSize, preprocessFrame, resizeRgb, resolvePreprocess, shortestEdgeSize } from '../../src/vision/preprocess.js';
import type { PreprocessorConfig, TowerFamily } from '../../src/vision/index.js';

// Golden cases written by Pillow 9.4 and numpy (test/fixtures/pil-resize/make.py).
const fixture = JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/pil-resize/cases.json'), 'utf8')) as {
  resizes: Array<{ width: number; height: number; outWidth: number; outHeight: number; input: string; bicubic: string; bilinear: string }>;
  frames: Array<{ family: TowerFamily; config: PreprocessorConfig; width: number; height: number; imageSize: number; input: string; expected: string }>;
};
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));
const floats = (b64: string) => {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};

describe('resizeRgb', () => {
  for (const c of fixture.resizes) {
    for (const filter of ['bicubic', 'bilinear'] as const) {
      it(`equals Pillow's Image.resize ${c.width}x${c.height} -> ${c.outWidth}x${c.outHeight} ${filter} byte for byte`, () => {
        const got = resizeRgb(bytes(c.input), c.width, c.height, c.outWidth, c.outHeight, filter);
        expect(Array.from(got)).toEqual(Array.from(bytes(c[filter])));
      });
    }
  }

  it('returns a frame already at the size untouched (no resampling)', () => {
    const frame = bytes(fixture.resizes[0]!.input);
    expect(resizeRgb(frame, 37, 23, 37, 23)).toBe(frame);
  });

  it('names the size a frame of the wrong length was expected to have', () => {
    expect(() => resizeRgb(new Uint8Array(10), 4, 4, 2, 2)).toThrow('resize: frame holds 10 bytes, expected 4 x 4 x 3');
  });
});

describe('preprocessFrame', () => {
  for (const c of fixture.frames) {
    it(`equals the ${c.family} processor (PIL resize, crop, numpy float32) on a ${c.width}x${c.height} frame with config ${JSON.stringify(c.config.size ?? 'none')}`, () => {
      const plan = resolvePreprocess(c.family, c.config, c.imageSize);
      const out = new Float32Array(3 * c.imageSize * c.imageSize);
      preprocessFrame(bytes(c.input), c.width, c.height, plan, c.imageSize, out);
      const expected = floats(c.expected);
      let maxDiff = 0;
      for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - expected[i]!));
      expect(maxDiff).toBeLessThanOrEqual(1e-6);
    });
  }

  it('writes each frame at its offset, channel planes first', () => {
    const plan = resolvePreprocess('siglip', { size: { height: 2, width: 2 } }, 2);
    const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
    const out = new Float32Array(2 + 12);
    preprocessFrame(rgb, 2, 2, plan, 2, out, 2);
    expect(Array.from(out)).toEqual([0, 0, 1, -1, -1, 1, -1, 1, -1, 1, -1, -1, 1, 1]);
  });
});

describe('resolvePreprocess', () => {
  it('keeps the aspect ratio as transformers does for shortest_edge (448x336 -> 298x224)', () => {
    expect(shortestEdgeSize(448, 336, 224)).toEqual({ width: 298, height: 224 });
    expect(shortestEdgeSize(336, 448, 224)).toEqual({ width: 224, height: 298 });
    const plan = resolvePreprocess('clip', { size: { shortest_edge: 224 }, crop_size: { height: 224, width: 224 }, do_center_crop: true }, 224);
    expect(outputSize(plan, 448, 336)).toEqual({ width: 224, height: 224 });
  });

  it('uses InternVL\'s fixed resize and ImageNet statistics whatever the folder says', () => {
    const plan = resolvePreprocess('internvit', { size: { shortest_edge: 448 }, do_center_crop: true }, 448);
    expect(plan).toMatchObject({ resize: { kind: 'fixed', height: 448, width: 448 }, crop: null, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
  });

  it('refuses a filter rpv does not resample with, naming it', () => {
    expect(() => resolvePreprocess('clip', { resample: 1 }, 224)).toThrow('preprocessor_config.json: resample 1 (lanczos) is not supported: rpv resamples as PIL with 2 (bilinear) or 3 (bicubic)');
  });

  it('refuses a processor whose frames are not the tower\'s size', () => {
    expect(() => resolvePreprocess('siglip', { size: { height: 224, width: 224 } }, 384)).toThrow(
      'preprocessor_config.json: SiglipImageProcessor gives 224x224 frames but the tower takes 384x384 (config.json image_size): check size and crop_size',
    );
  });
});
