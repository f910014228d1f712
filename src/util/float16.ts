/**
 * IEEE 754 binary16 ("half") <-> binary32 conversion for feature arrays. Shards store float16
 * features as their raw 16-bit patterns (Arrow `Float16`, Parquet `FLOAT16` logical type);
 * in memory features are always `Float32Array`.
 *
 * Encoding rounds to nearest, ties to even (as numpy and IEEE do), keeps subnormals, maps
 * values beyond the half range (|x| >= 65520) to infinity and keeps NaN a NaN. Decoding is exact
 * (every half is a float32) and uses a 65,536-entry lookup table built on first use.
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Half bits of one float32 bit pattern. */
function halfFromFloatBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) {
    // Infinity keeps its sign; NaN stays NaN (quiet bit set so the payload cannot become 0).
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00; // overflow: infinity
  if (e <= 0) {
    // Subnormal half (or zero): value = half * 2^-24, i.e. the 24-bit mantissa shifted right.
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and reaches infinity at the top).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** Half bits of a number (rounded to nearest even). */
export function toFloat16Bits(value: number): number {
  scratchF32[0] = value;
  return halfFromFloatBits(scratchU32[0]!);
}

/** Number value of half bits. */
export function fromFloat16Bits(bits: number): number {
  return halfTable()[bits & 0xffff]!;
}

const HALF_OVERFLOW = (127 + 16) << 23; // 65536: from here on the result is infinity (or NaN)
const FLOAT_INF = 255 << 23;
const MIN_NORMAL_HALF = 113 << 23; // 2^-14
const DENORM_MAGIC = (127 - 15 + (23 - 10) + 1) << 23; // 0.5: aligns a subnormal's 10 bits at the bottom
const REBIAS = ((15 - 127) << 23) + 0xfff;

/**
 * Encode a float32 array as half bits, one pass. Branch-light round-to-nearest-even (the method of
 * F. Giesen's `float_to_half_fast3_rtne`): normal results add the rebias plus 0xfff and the
 * mantissa's lowest kept bit, then shift; subnormals are rounded by float addition of 0.5 (exact in
 * double, rounded once when stored as float32). Same results as `toFloat16Bits` (NaN payloads
 * become the quiet NaN 0x7e00).
 */
export function float32ToFloat16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length < src.length) throw new RangeError(`float32ToFloat16: output holds ${out.length} values, input has ${src.length}`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i]!;
    const sign = (u >>> 16) & 0x8000;
    let a = u & 0x7fffffff;
    if (a >= HALF_OVERFLOW) {
      out[i] = sign | (a > FLOAT_INF ? 0x7e00 : 0x7c00);
    } else if (a < MIN_NORMAL_HALF) {
      scratchU32[0] = a;
      scratchF32[0] = scratchF32[0]! + 0.5;
      out[i] = sign | (scratchU32[0]! - DENORM_MAGIC);
    } else {
      a += REBIAS + ((a >>> 13) & 1);
      out[i] = sign | (a >>> 13);
    }
  }
  return out;
}

/**
 * Decode half bits to a new (or the given) float32 array through a 65,536-entry table, reading two
 * halves per 32-bit load where aligned: measured 1.4x faster than one lookup per 16-bit load
 * (16 M values: median 51 ms vs 72 ms on the 2-core machine); it is most of a loader worker's time.
 */
export function float16ToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length < src.length) throw new RangeError(`float16ToFloat32: output holds ${out.length} values, input has ${src.length}`);
  const t = halfTable();
  if (src.length === 0) return out;
  let i = 0;
  if ((src.byteOffset & 3) !== 0) out[i++] = t[src[0]!]!;
  const pairs = (src.length - i) >> 1;
  const words = new Uint32Array(src.buffer, src.byteOffset + 2 * i, pairs);
  // Little-endian: the first half is the low 16 bits of each word.
  for (let k = 0; k < pairs; k++, i += 2) {
    const w = words[k]!;
    out[i] = t[w & 0xffff]!;
    out[i + 1] = t[w >>> 16]!;
  }
  if (i < src.length) out[i] = t[src[i]!]!;
  return out;
}

let table: Float32Array | undefined;

function halfTable(): Float32Array {
  if (table) return table;
  table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) v = mant * 2 ** -24;
    else if (exp === 0x1f) v = mant === 0 ? Infinity : NaN;
    else v = (1 + mant / 1024) * 2 ** (exp - 15);
    table[h] = sign * v;
  }
  return table;
}
