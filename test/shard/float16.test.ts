import { describe, expect, it } from 'vitest';
import { float16ToFloat32, float32ToFloat16, fromFloat16Bits, toFloat16Bits } from '../../src/util/float16.js';

describe('float16', () => {
  it('encodes known values to their IEEE half bit patterns', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff], // largest finite half
      [65520, 0x7c00], // rounds up to infinity (halfway, ties to even)
      [65519.99, 0x7bff],
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to 0: ties to even -> 0
      [2 ** -25 * 1.0001, 0x0001], // just above halfway -> smallest subnormal
      [3 * 2 ** -25, 0x0002], // halfway between 1 and 2 subnormal units: ties to even -> 2
      [2 ** -26, 0x0000],
      [1e-10, 0x0000],
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and next: ties to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway, odd below: rounds up
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway: up
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [2047.5, 0x6800 - 0], // 2047.5 is halfway between 2047 and 2048 (step 1): ties to even -> 2048 (0x6800)
    ];
    for (const [value, bits] of cases) {
      expect({ value, bits: toFloat16Bits(value) }).toEqual({ value, bits });
    }
  });

  it('keeps NaN a NaN and decodes special values', () => {
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN)))).toBe(true);
    expect(toFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(toFloat16Bits(NaN) & 0x03ff).not.toBe(0);
    expect(fromFloat16Bits(0x7c00)).toBe(Infinity);
    expect(fromFloat16Bits(0xfc00)).toBe(-Infinity);
    expect(fromFloat16Bits(0x0001)).toBe(2 ** -24);
    expect(fromFloat16Bits(0x03ff)).toBe(1023 * 2 ** -24);
    expect(Object.is(fromFloat16Bits(0x8000), -0)).toBe(true);
    expect(fromFloat16Bits(0x7bff)).toBe(65504);
  });

  it('array encoder agrees with the scalar one on random bit patterns of every range', () => {
    let seed = 99;
    const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
    const bits = new Uint32Array(200000);
    for (let i = 0; i < bits.length; i++) {
      // Exponents spread over zero, subnormal-half, normal-half and overflow ranges.
      const exp = [0, 90, 100, 102, 103, 110, 112, 113, 114, 127, 140, 142, 143, 144, 200, 255][next() % 16]!;
      bits[i] = (next() & 0x80000000) | (exp << 23) | (next() & 0x7fffff);
    }
    const values = new Float32Array(bits.buffer);
    const fast = float32ToFloat16(values);
    for (let i = 0; i < values.length; i++) {
      const want = toFloat16Bits(values[i]!);
      const isNaN = (want & 0x7c00) === 0x7c00 && (want & 0x3ff) !== 0;
      if (isNaN ? fast[i] !== ((want & 0x8000) | 0x7e00) : fast[i] !== want) expect({ bits: bits[i], fast: fast[i] }).toEqual({ bits: bits[i], fast: want });
    }
  });

  it('round-trips every finite half exactly', () => {
    const bits = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) bits[i] = i;
    const back = float32ToFloat16(float16ToFloat32(bits));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN) expect((back[i]! & 0x7c00) === 0x7c00 && (back[i]! & 0x3ff) !== 0).toBe(true);
      else if (back[i] !== i) expect({ i, back: back[i] }).toEqual({ i, back: i });
    }
  });

  it('rounds to the nearest half (error within half a unit in the last place)', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const src = new Float32Array(20000);
    for (let i = 0; i < src.length; i++) src[i] = (rand() - 0.5) * 2 ** Math.floor(rand() * 30 - 20);
    const back = float16ToFloat32(float32ToFloat16(src));
    for (let i = 0; i < src.length; i++) {
      const x = src[i]!;
      const exp = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
      const ulp = 2 ** (exp - 10);
      expect(Math.abs(back[i]! - x)).toBeLessThanOrEqual(ulp / 2);
    }
  });
});
