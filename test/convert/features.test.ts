import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { convertExport } from '../../src/convert/convert.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { float16ToFloat32, float32ToFloat16 } from '../../src/util/float16.js';
import { readAllRows, sampleExport, tempDir } from './fixtures.js';

/** A float32 .npy file (format 1.0, C order). */
async function writeNpy(file: string, shape: number[], data: Float32Array): Promise<void> {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  await fs.writeFile(file, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

it('--features uses precomputed [frames, tokens, dim] features with their timestamps; a missing or mismatched file is skipped', async () => {
  const exportDir = await sampleExport(3);
  const features = tempDir('rpv-feat-');
  const values = Float32Array.from({ length: 5 * 2 * 8 }, (_, i) => Math.cos(i) * 10);
  await writeNpy(path.join(features, 'clip-01.npy'), [5, 2, 8], values);
  await fs.writeFile(path.join(features, 'clip-01.json'), JSON.stringify({ frame_times: [0.5, 1, 1.5, 2, 2.5] }));
  await writeNpy(path.join(features, 'clip-03.npy'), [2, 16], new Float32Array(32));
  await fs.writeFile(path.join(features, 'clip-03.json'), JSON.stringify({ frame_times: [0, 1] }));

  const out = tempDir();
  const summary = await convertExport({ input: exportDir, out, features });
  const rows = await readAllRows(out);
  expect(rows.map((r) => [r.video_id, r.num_frames, Array.from(r.frame_times)])).toEqual([['clip-01', 5, [0.5, 1, 1.5, 2, 2.5]]]);
  expect(rows[0]!.frames).toEqual(float16ToFloat32(float32ToFloat16(values)));
  expect(rows[0]!.duration_sec).toBeGreaterThan(2); // probed from the video
  const index = await readShardIndex(out);
  expect(index.schema).toMatchObject({ featureDim: 8, tokensPerFrame: 2, dtype: 'float16' });
  expect(index.encoder).toEqual({ id: 'precomputed', kind: 'precomputed', folder: features });
  expect(index.skipped.map((s) => [s.line, s.reason])).toEqual([
    [2, `features missing: features: no clip-02.safetensors or clip-02.npy in ${features}`],
    [3, `features bad: ${path.join(features, 'clip-03.npy')}: [2, 1, 16] does not match the dataset's tokensPerFrame 2 x featureDim 8`],
  ]);
  expect(summary.counts).toMatchObject({ read: 3, converted: 1, skipped: 2 });
});
