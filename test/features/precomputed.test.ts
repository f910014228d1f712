import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPrecomputedFeatures } from '../../src/features/precomputed.js';
import { encodeNpy, parseNpy } from '../../src/features/npy.js';
import { writeSafetensors } from '../../src/util/safetensors.js';

let dir: string;

/** Values exactly representable in float16, so f16 and f32 files must read back equal. */
function values(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => ((i % 37) - 18) / 8);
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-features-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('npy', () => {
  it('round-trips float32 and float16 arrays and reads NumPy-written headers', () => {
    const data = values(2 * 3 * 5);
    for (const dtype of ['float32', 'float16'] as const) {
      const bytes = encodeNpy(data, [2, 3, 5], dtype);
      expect((10 + new DataView(bytes.buffer).getUint16(8, true)) % 64).toBe(0);
      const back = parseNpy(bytes, 'x.npy');
      expect(back).toEqual({ dtype, shape: [2, 3, 5], data });
    }
    // A header as numpy 1.x writes it for a big-endian float32 (3,) array.
    const header = "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }";
    const padded = header.padEnd(128 - 10 - 1, ' ') + '\n';
    const bytes = new Uint8Array(128 + 12);
    bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    new DataView(bytes.buffer).setUint16(8, padded.length, true);
    bytes.set(Buffer.from(padded, 'latin1'), 10);
    [1.5, -2, 1e-3].forEach((v, i) => new DataView(bytes.buffer).setFloat32(128 + 4 * i, v, false));
    expect(Array.from(parseNpy(bytes, 'be.npy').data)).toEqual([1.5, -2, Math.fround(1e-3)]);
  });

  it('rejects what it cannot read, naming the file', () => {
    expect(() => parseNpy(new Uint8Array(20), 'a.npy')).toThrow('a.npy: not a .npy file (no \\x93NUMPY magic)');
    const ints = encodeNpy([1, 2], [2]);
    const text = Buffer.from(ints).toString('latin1').replace("'<f4'", "'<i4'");
    expect(() => parseNpy(Buffer.from(text, 'latin1'), 'b.npy')).toThrow("b.npy: dtype <i4 is not supported: expected float16 or float32 ('<f2', '<f4'; '<f8' is converted)");
    const cut = encodeNpy(values(10), [10]).subarray(0, 128 + 12);
    expect(() => parseNpy(cut, 'c.npy')).toThrow('c.npy: <f4 array of shape (10) needs 40 data bytes, the file has 12 (truncated?)');
  });
});

describe('readPrecomputedFeatures', () => {
  it('reads .npy [frames, dim] and [frames, tokens, dim], float32 and float16, with either timestamp sidecar', async () => {
    const times = [0.5, 1.5, 2.5, 3.5];
    const flat = values(4 * 3 * 8);
    await fs.writeFile(path.join(dir, 'v1.npy'), encodeNpy(flat, [4, 24], 'float32'));
    await fs.writeFile(path.join(dir, 'v1.json'), JSON.stringify({ frame_times: times }));
    await fs.writeFile(path.join(dir, 'v2.npy'), encodeNpy(flat, [4, 3, 8], 'float16'));
    await fs.writeFile(path.join(dir, 'v2.times.npy'), encodeNpy(times, [4]));
    const a = await readPrecomputedFeatures(dir, 'v1');
    expect(a).toMatchObject({ numFrames: 4, tokensPerFrame: 1, featureDim: 24, dtype: 'float32', file: path.join(dir, 'v1.npy') });
    expect(a.frames).toEqual(flat);
    expect(Array.from(a.frameTimes)).toEqual(times);
    const b = await readPrecomputedFeatures(dir, 'v2');
    expect(b).toMatchObject({ numFrames: 4, tokensPerFrame: 3, featureDim: 8, dtype: 'float16' });
    expect(b.frames).toEqual(flat);
    expect(Array.from(b.frameTimes)).toEqual(times);
  });

  it('reads .safetensors features and frame_times, F32 and F16, both shapes', async () => {
    const flat = values(5 * 2 * 6);
    const times = Float32Array.from([0.25, 0.75, 1.25, 1.75, 2.25]);
    await writeSafetensors(path.join(dir, 's32.safetensors'), { features: { shape: [5, 12], data: flat }, frame_times: { shape: [5], data: times } });
    await writeSafetensors(path.join(dir, 's16.safetensors'), { features: { shape: [5, 2, 6], data: flat, dtype: 'F16' }, frame_times: { shape: [5], data: times, dtype: 'F32' } });
    const a = await readPrecomputedFeatures(dir, 's32');
    expect(a).toMatchObject({ numFrames: 5, tokensPerFrame: 1, featureDim: 12, dtype: 'float32' });
    expect(a.frames).toEqual(flat);
    expect(Array.from(a.frameTimes)).toEqual(Array.from(times));
    const b = await readPrecomputedFeatures(dir, 's16');
    expect(b).toMatchObject({ numFrames: 5, tokensPerFrame: 2, featureDim: 6, dtype: 'float16' });
    expect(b.frames).toEqual(flat);
  });

  it('says exactly what is wrong, naming the file', async () => {
    const f = (name: string) => path.join(dir, name);
    await expect(readPrecomputedFeatures(dir, 'none')).rejects.toMatchObject({ reason: 'missing-features', message: `features: no none.safetensors or none.npy in ${dir}` });
    await expect(readPrecomputedFeatures(dir, '../escape')).rejects.toThrow('features: video id "../escape" would name a file outside');

    await fs.writeFile(f('flat.npy'), encodeNpy(values(8), [8]));
    await fs.writeFile(f('flat.json'), JSON.stringify({ frame_times: [1] }));
    await expect(readPrecomputedFeatures(dir, 'flat')).rejects.toThrow(`${f('flat.npy')}: features have shape [8]; expected [frames, dim] or [frames, tokens, dim]`);

    await fs.writeFile(f('count.npy'), encodeNpy(values(6), [3, 2]));
    await fs.writeFile(f('count.json'), JSON.stringify({ frame_times: [0.5, 1.5] }));
    await expect(readPrecomputedFeatures(dir, 'count')).rejects.toThrow(`${f('count.npy')}: 3 frames of features but 2 timestamps`);

    await fs.writeFile(f('order.npy'), encodeNpy(values(6), [3, 2]));
    await fs.writeFile(f('order.json'), JSON.stringify({ frame_times: [0.5, 2.5, 1.5] }));
    await expect(readPrecomputedFeatures(dir, 'order')).rejects.toThrow(`${f('order.npy')}: timestamps must increase: 2.5 then 1.5 at frame 2`);

    await fs.writeFile(f('notimes.npy'), encodeNpy(values(6), [3, 2]));
    await expect(readPrecomputedFeatures(dir, 'notimes')).rejects.toThrow(`${f('notimes.npy')}: no timestamps: write notimes.json {"frame_times": [...]} or notimes.times.npy`);

    await writeSafetensors(f('nots.safetensors'), { features: { shape: [2, 2], data: values(4) } });
    await expect(readPrecomputedFeatures(dir, 'nots')).rejects.toThrow(`${f('nots.safetensors')}: no tensor "frame_times" with the frames' timestamps in seconds`);

    await writeSafetensors(f('ints.safetensors'), { features: { shape: [2, 2], data: Int32Array.from([1, 2, 3, 4]) }, frame_times: { shape: [2], data: values(2).map(Math.abs).sort() } });
    await expect(readPrecomputedFeatures(dir, 'ints')).rejects.toThrow(`${f('ints.safetensors')}: tensor "features" is I32; expected F32, F16 or BF16`);
  });
});
