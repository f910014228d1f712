import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  decodeSafetensors,
  encodeSafetensors,
  floatToBFloat16Bits,
  floatToHalfBits,
  readSafetensors,
  SafetensorsReader,
  writeSafetensors,
  writeSafetensorsStreaming,
} from '../../src/util/safetensors.js';

function randomFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 8;
  }
  return out;
}

describe('safetensors', () => {
  it('converts known values to half and bfloat16 bits (round to nearest even)', () => {
    expect(floatToHalfBits(1)).toBe(0x3c00);
    expect(floatToHalfBits(-2)).toBe(0xc000);
    expect(floatToHalfBits(65504)).toBe(0x7bff);
    expect(floatToHalfBits(1e6)).toBe(0x7c00); // overflow -> inf
    expect(floatToHalfBits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(floatToHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie rounds to even
    expect(floatToHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(floatToBFloat16Bits(1)).toBe(0x3f80);
    expect(floatToBFloat16Bits(-0.5)).toBe(0xbf00);
    expect(floatToBFloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie to even
    expect(floatToBFloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(floatToBFloat16Bits(NaN) & 0x7fc0).toBe(0x7fc0);
  });

  it('round trips F32 exactly and F16/BF16 within their precision, header padded to 8 bytes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-st-'));
    const a = randomFloats(35, 1);
    const b = randomFloats(12, 2);
    const ids = Int32Array.from([3, -1, 7]);
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const file = path.join(dir, `${dtype}.safetensors`);
      await writeSafetensors(file, { 'x.weight': { shape: [5, 7], data: a }, bias: { shape: [12], data: b }, ids: { shape: [3], data: ids } }, { dtype, metadata: { format: 'pt' } });
      const bytes = readFileSync(file);
      const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      expect(headerLen % 8).toBe(0);
      const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
      expect(header.__metadata__).toEqual({ format: 'pt' });
      expect(header['x.weight'].dtype).toBe(dtype);
      expect(header.ids.dtype).toBe('I32');
      const { tensors, metadata } = await readSafetensors(file);
      expect(metadata).toEqual({ format: 'pt' });
      expect(tensors.get('x.weight')!.shape).toEqual([5, 7]);
      expect([...tensors.get('ids')!.data]).toEqual([3, -1, 7]);
      const tol = dtype === 'F32' ? 0 : dtype === 'F16' ? 2 ** -11 : 2 ** -8;
      for (const [name, ref] of [['x.weight', a], ['bias', b]] as const) {
        const got = tensors.get(name)!.data;
        for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i] - ref[i])).toBeLessThanOrEqual(Math.abs(ref[i]) * tol);
      }
      // Same bytes decoded from memory.
      expect(decodeSafetensors(bytes).tensors.get('bias')!.data).toEqual(tensors.get('bias')!.data);
    }
  });

  it('decodes a file laid out by hand (F16 and BF16 bit patterns)', () => {
    const header = JSON.stringify({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, b: { dtype: 'BF16', shape: [2], data_offsets: [4, 8] } });
    const hb = Buffer.from(header);
    const buf = Buffer.alloc(8 + hb.length + 8);
    buf.writeBigUInt64LE(BigInt(hb.length), 0);
    hb.copy(buf, 8);
    buf.writeUInt16LE(0x3c00, 8 + hb.length); // 1.0
    buf.writeUInt16LE(0xc500, 8 + hb.length + 2); // -5.0
    buf.writeUInt16LE(0x4049, 8 + hb.length + 4); // 3.140625
    buf.writeUInt16LE(0xbf80, 8 + hb.length + 6); // -1
    const { tensors } = decodeSafetensors(new Uint8Array(buf));
    expect([...tensors.get('h')!.data]).toEqual([1, -5]);
    expect([...tensors.get('b')!.data]).toEqual([3.140625, -1]);
  });

  it('names the file and the problem on corrupt input', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-st-'));
    const file = path.join(dir, 'bad.safetensors');
    writeFileSync(file, Buffer.from([1, 2, 3]));
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: not a safetensors file: 3 bytes, shorter than the 8-byte header length`);
    const good = encodeSafetensors({ w: { shape: [4], data: new Float32Array(4) } });
    writeFileSync(file, good.subarray(0, good.length - 4));
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: tensor w: data_offsets end 16 beyond the 12-byte data section (file truncated?)`);
  });

  it('streams tensors from values or stored bytes (I32 too) into the layout encodeSafetensors writes; readBytes reads them back in pieces', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-st-'));
    const w = randomFloats(1000, 3);
    const ids = Int32Array.from({ length: 9 }, (_, i) => i * 1000 - 4000);
    const half = new Uint16Array(w.length);
    for (let i = 0; i < w.length; i++) half[i] = floatToBFloat16Bits(w[i]!);
    const from = (bytes: Uint8Array) => {
      let at = 0;
      return (out: Uint8Array) => {
        out.set(bytes.subarray(at, at + out.length));
        at += out.length;
      };
    };
    let at = 0;
    const order: string[] = [];
    const file = path.join(dir, 'streamed.safetensors');
    await writeSafetensorsStreaming(
      file,
      [
        { name: 'w', shape: [10, 100], dtype: 'F16', fill: async (out) => { out.set(w.subarray(at, at + out.length)); at += out.length; } },
        { name: 'ids', shape: [9], dtype: 'I32', fillBytes: from(new Uint8Array(ids.buffer)) },
        { name: 'b', shape: [1000], dtype: 'BF16', fillBytes: from(new Uint8Array(half.buffer)) },
        { name: 'empty', shape: [0], dtype: 'F32', fill: () => {} },
      ],
      { metadata: { format: 'pt' }, chunkElements: 64, onTensor: (name) => order.push(name) },
    );
    const expected = encodeSafetensors({ w: { shape: [10, 100], data: w, dtype: 'F16' }, ids: { shape: [9], data: ids }, b: { shape: [1000], data: w, dtype: 'BF16' }, empty: { shape: [0], data: new Float32Array(0) } }, { metadata: { format: 'pt' } });
    expect(Buffer.from(readFileSync(file)).equals(Buffer.from(expected))).toBe(true);
    expect(order).toEqual(['empty', 'ids', 'b', 'w']);
    const reader = await SafetensorsReader.open(file);
    try {
      const piece = new Uint8Array(12);
      await reader.readBytes('ids', 8, piece);
      expect([...new Int32Array(piece.buffer)]).toEqual([...ids.subarray(2, 5)]);
      await expect(reader.readBytes('ids', 28, piece)).rejects.toThrow(`${file}: tensor ids: bytes [28, 40) beyond its 36`);
    } finally {
      await reader.close();
    }
    await expect(writeSafetensorsStreaming(path.join(dir, 'x.safetensors'), [{ name: 'ids', shape: [1], dtype: 'I32', fill: () => {} }])).rejects.toThrow('safetensors: tensor ids: I32 is written from fillBytes');
    await expect(writeSafetensorsStreaming(path.join(dir, 'x.safetensors'), [{ name: 'w', shape: [1], dtype: 'F32' }])).rejects.toThrow('safetensors: tensor w: give fill or fillBytes, not neither');
  });
});
