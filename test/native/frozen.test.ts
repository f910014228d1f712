// The frozen-weight kernels (src/native/frozen.cc) against float64 references: weights written to
// real safetensors files in F32, F16 and BF16, memory-mapped, and used in place by the frozen
// linear (forward x W^T + b and input gradient dy W), the embedding lookup and the chunked
// cross-entropy, over edge shapes, with 1 and 2 threads.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { MappedFile, type MappedDType, type MappedMatrix } from '../../src/native/frozen.js';
import { readSafetensors, SafetensorsReader, writeSafetensors } from '../../src/util/safetensors.js';
import { randomArray } from './helpers.js';

const load = loadNativeAddon();
if (!load.addon) throw new Error(`native addon must be built for these tests: ${load.reason}`);
const addon: NativeAddon = load.addon;
const originalThreads = addon.threads();
const dir = mkdtempSync(path.join(os.tmpdir(), 'rpv-frozen-'));
const DTYPES: MappedDType[] = ['F32', 'F16', 'BF16'];

afterAll(() => {
  addon.setThreads(originalThreads);
  rmSync(dir, { recursive: true, force: true });
});

/** A weight written in `dtype`, mapped, with the values the file really holds (rounded). */
async function mappedWeight(name: string, rows: number, cols: number, dtype: MappedDType, seed: number, scale = 1): Promise<{ m: MappedMatrix; values: Float32Array; file: MappedFile }> {
  const data = randomArray(rows * cols, seed).map((v) => v * scale);
  const file = path.join(dir, `${name}.safetensors`);
  // A small tensor before it, so the weight does not start at the data section's first byte.
  await writeSafetensors(file, { a_pad: { shape: [3], data: new Float32Array(3) }, w: { shape: [rows, cols], data, dtype } });
  const reader = await SafetensorsReader.open(file);
  const loc = reader.location('w');
  await reader.close();
  const values = (await readSafetensors(file)).tensors.get('w')!.data as Float32Array;
  const mapped = MappedFile.open(file);
  return { m: mapped.matrix(loc.byteOffset, dtype, rows, cols), values, file: mapped };
}

function maxRelError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / scale;
}

// [rows, in, out]: single elements, odd sizes, one past the microkernel tile (6 x 16), the depth
// block (256), the row block (96/192) and the column block (1024).
const LINEAR_SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [5, 3, 17],
  [7, 257, 33],
  [193, 64, 40],
  [13, 300, 1030],
];

for (const threads of [1, 2]) {
  describe(`frozen kernels with ${threads} thread(s)`, () => {
    beforeAll(() => {
      addon.setThreads(threads);
    });

    for (const dtype of DTYPES) {
      for (const [rows, inF, outF] of LINEAR_SHAPES) {
        it(`${dtype} linear rows=${rows} in=${inF} out=${outF}: forward with bias and input gradient`, async () => {
          const { m, values, file } = await mappedWeight(`lin-${dtype}-${rows}-${inF}-${outF}-${threads}`, outF, inF, dtype, rows * 7 + inF);
          const x = randomArray(rows * inF, 3 + outF);
          const dy = randomArray(rows * outF, 5 + inF);
          const bias = randomArray(outF, 11);
          // One heap holding x, y, dy, dx at offsets, as the wasm heap does.
          const heap = new Float32Array(7 + rows * inF + rows * outF + rows * outF + rows * inF);
          const xOff = 7;
          const yOff = xOff + rows * inF;
          const dyOff = yOff + rows * outF;
          const dxOff = dyOff + rows * outF;
          heap.set(x, xOff);
          heap.set(dy, dyOff);
          addon.frozenMatmul!(heap, xOff, rows, m.desc, true, yOff, bias);
          addon.frozenMatmul!(heap, dyOff, rows, m.desc, false, dxOff);
          const y = new Float64Array(rows * outF);
          const dx = new Float64Array(rows * inF);
          for (let r = 0; r < rows; r++) {
            for (let o = 0; o < outF; o++) {
              let s = bias[o];
              for (let i = 0; i < inF; i++) s += x[r * inF + i] * values[o * inF + i];
              y[r * outF + o] = s;
            }
            for (let i = 0; i < inF; i++) {
              let s = 0;
              for (let o = 0; o < outF; o++) s += dy[r * outF + o] * values[o * inF + i];
              dx[r * inF + i] = s;
            }
          }
          expect(maxRelError(heap.subarray(yOff, yOff + rows * outF), y)).toBeLessThan(1e-5);
          expect(maxRelError(heap.subarray(dxOff, dxOff + rows * inF), dx)).toBeLessThan(1e-5);
          expect(heap.subarray(0, xOff).every((v) => v === 0)).toBe(true);
          file.close();
        });
      }

      it(`${dtype} embedding rows are the stored values, exactly`, async () => {
        const { m, values, file } = await mappedWeight(`emb-${dtype}-${threads}`, 50, 19, dtype, 21);
        const ids = Int32Array.of(0, 49, 7, 7, 23);
        const heap = new Float32Array(2 + ids.length * 19);
        addon.gatherRows!(heap, 2, m.desc, ids);
        for (let i = 0; i < ids.length; i++) {
          expect(Array.from(heap.subarray(2 + i * 19, 2 + (i + 1) * 19))).toEqual(Array.from(values.subarray(ids[i] * 19, (ids[i] + 1) * 19)));
        }
        file.close();
      });

      // [rows, hidden, vocab, chunkRows]
      const XENT: [number, number, number, number][] = [
        [1, 5, 7, 4],
        [13, 64, 1500, 4],
        [130, 33, 3001, 128],
        [9, 16, 257, 1],
      ];
      for (const [rows, hidden, vocab, chunkRows] of XENT) {
        it(`${dtype} cross-entropy rows=${rows} hidden=${hidden} vocab=${vocab} in chunks of ${chunkRows}: loss and gradient`, async () => {
          const { m, values, file } = await mappedWeight(`xent-${dtype}-${rows}-${vocab}-${threads}`, vocab, hidden, dtype, vocab + hidden, 0.5);
          const h = randomArray(rows * hidden, 99 + rows).map((v) => v * 3);
          const targets = Int32Array.from({ length: rows }, (_, i) => (i * 7919 + 13) % vocab);
          const heap = new Float32Array(rows * hidden * 2 + 1);
          heap.set(h, 1);
          const loss = new Float32Array(rows);
          addon.crossEntropy!(heap, 1, rows, m.desc, targets, loss, 1 + rows * hidden, chunkRows);
          const lossOnly = new Float32Array(rows);
          addon.crossEntropy!(heap, 1, rows, m.desc, targets, lossOnly, -1, chunkRows);
          const wantLoss = new Float64Array(rows);
          const wantDh = new Float64Array(rows * hidden);
          const logits = new Float64Array(vocab);
          for (let r = 0; r < rows; r++) {
            let max = -Infinity;
            for (let v = 0; v < vocab; v++) {
              let s = 0;
              for (let j = 0; j < hidden; j++) s += h[r * hidden + j] * values[v * hidden + j];
              logits[v] = s;
              max = Math.max(max, s);
            }
            let sum = 0;
            for (let v = 0; v < vocab; v++) sum += Math.exp(logits[v] - max);
            const lse = max + Math.log(sum);
            wantLoss[r] = lse - logits[targets[r]];
            for (let v = 0; v < vocab; v++) {
              const g = Math.exp(logits[v] - lse) - (v === targets[r] ? 1 : 0);
              for (let j = 0; j < hidden; j++) wantDh[r * hidden + j] += g * values[v * hidden + j];
            }
          }
          expect(maxRelError(loss, wantLoss)).toBeLessThan(1e-5);
          expect(Array.from(lossOnly)).toEqual(Array.from(loss));
          expect(maxRelError(heap.subarray(1 + rows * hidden), wantDh)).toBeLessThan(1e-5);
          file.close();
        });
      }
    }

    it('gives bit-identical results for any thread count and chunk size of the same rows', async () => {
      const { m, file } = await mappedWeight(`det-${threads}`, 2000, 48, 'BF16', 5);
      const rows = 37;
      const h = randomArray(rows * 48, 8);
      const targets = Int32Array.from({ length: rows }, (_, i) => (i * 31) % 2000);
      const run = (t: number) => {
        addon.setThreads(t);
        const heap = new Float32Array(rows * 48 * 2);
        heap.set(h);
        const loss = new Float32Array(rows);
        addon.crossEntropy!(heap, 0, rows, m.desc, targets, loss, rows * 48, 64);
        return [Array.from(loss), Array.from(heap.subarray(rows * 48))];
      };
      const one = run(1);
      const two = run(2);
      addon.setThreads(threads);
      expect(two).toEqual(one);
      file.close();
    });
  });
}

describe('frozen kernels refuse what they cannot read', () => {
  it('names the row and the vocabulary of a target outside it', async () => {
    const { m, file } = await mappedWeight('bad-target', 10, 4, 'F32', 1);
    const heap = new Float32Array(8);
    expect(() => addon.crossEntropy!(heap, 0, 2, m.desc, Int32Array.of(3, 10), new Float32Array(2), -1, 8)).toThrow(
      'rpv frozen: crossEntropy: target 10 of row 1 is outside the vocabulary [0, 10)',
    );
    file.close();
  });

  it('refuses a weight of a file that was unmapped', async () => {
    const { m, file } = await mappedWeight('closed', 4, 4, 'F32', 1);
    file.close();
    expect(() => addon.frozenMatmul!(new Float32Array(8), 0, 1, m.desc, true, 4)).toThrow(`rpv frozen: frozenMatmul: weight: mapping ${m.file.id} is not open (unmapped, or never mapped)`);
  });

  it('refuses operands outside the heap and bytes outside the file', async () => {
    const { m, file } = await mappedWeight('bounds', 4, 6, 'BF16', 1);
    expect(() => addon.frozenMatmul!(new Float32Array(10), 0, 2, m.desc, true, 4)).toThrow('rpv frozen: frozenMatmul: input [2, 6] at 0 lies outside the heap');
    expect(() => file.matrix(m.byteOffset, 'BF16', 400, 6)).toThrow(/lie beyond the file's \d+ bytes/);
    const forged = Float64Array.of(file.id, m.byteOffset, 2, 400, 6);
    expect(() => addon.gatherRows!(new Float32Array(12), 0, forged, Int32Array.of(0))).toThrow(/rpv frozen: gatherRows: table: bytes \[\d+, \d+\) lie outside .*bounds\.safetensors/);
    expect(() => addon.gatherRows!(new Float32Array(12), 0, m.desc, Int32Array.of(4))).toThrow("rpv frozen: gatherRows: id 4 at position 0 is outside the table's 4 rows");
    file.close();
  });

  it('names a file that cannot be mapped', () => {
    expect(() => MappedFile.open(path.join(dir, 'missing.safetensors'))).toThrow(/rpv frozen: .*missing\.safetensors: cannot open \(No such file or directory\)/);
  });
});
