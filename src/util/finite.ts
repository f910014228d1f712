/**
 * Finding NaN and infinite values in weights, once where they are read or before they are
 * written: one non-finite weight turns every output of a model into NaN, silently.
 *
 * Stored floats are scanned on their raw bits (a value is NaN or infinite exactly when its
 * exponent bits are all ones), so 16-bit tensors need no decoding: about one comparison per
 * 32-bit word.
 */
import { RpvError } from './errors.js';

/** Index of the first NaN or infinite value of `data`, -1 when every value is finite. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    // v - v is 0 for every finite v, NaN for NaN and the infinities.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Exponent masks of the float dtypes rpv stores. */
const EXPONENT_BITS = { F32: 0x7f800000, F16: 0x7c00, BF16: 0x7f80 } as const;
export type ScannedDType = keyof typeof EXPONENT_BITS;

/**
 * Index of the first NaN or infinite element among `bytes` (whole little-endian elements of
 * `dtype`, aligned to their size), -1 when there is none.
 */
export function firstNonFiniteBits(bytes: Uint8Array, dtype: ScannedDType): number {
  if (dtype === 'F32') {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    const e = EXPONENT_BITS.F32;
    for (let i = 0; i < words.length; i++) if ((words[i]! & e) === e) return i;
    return -1;
  }
  const e = EXPONENT_BITS[dtype];
  const halves = bytes.byteLength >>> 1;
  // Two halves per 32-bit word; the word that holds one is looked at half by half.
  const pairs = bytes.byteOffset % 4 === 0 ? halves >>> 1 : 0;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, pairs);
  const hi = e << 16;
  for (let i = 0; i < pairs; i++) {
    const w = words[i]!;
    if ((w & e) === e) return 2 * i;
    if ((w & hi) === hi) return 2 * i + 1;
  }
  const rest = new Uint16Array(bytes.buffer, bytes.byteOffset, halves);
  for (let i = 2 * pairs; i < halves; i++) if ((rest[i]! & e) === e) return i;
  return -1;
}

/** The decoded value of a non-finite element from its bits: NaN, Infinity or -Infinity. */
export function nonFiniteValueOfBits(bytes: Uint8Array, dtype: ScannedDType, index: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') return view.getFloat32(index * 4, true);
  const bits = view.getUint16(index * 2, true);
  const mantissa = dtype === 'F16' ? bits & 0x3ff : bits & 0x7f;
  if (mantissa !== 0) return NaN;
  return bits & 0x8000 ? -Infinity : Infinity;
}

/** `tensor <name>: value <i> of <n> is NaN`: the part of a message that names the value. */
export function describeNonFinite(name: string, index: number, count: number, value: number): string {
  return `tensor ${name}: value ${index} of ${count} is ${value}`;
}

/**
 * The refusal of a weight read from `file`:
 * `<file>: tensor <name>: value <i> of <n> is NaN; non-finite weights are refused (they make every output NaN)`.
 */
export function nonFiniteWeightError(file: string, name: string, index: number, count: number, value: number): RpvError {
  return new RpvError(`${file}: ${describeNonFinite(name, index, count, value)}; non-finite weights are refused (they make every output NaN)`);
}

/** Throws `nonFiniteWeightError` when `data` (values of tensor `name` read from `file`) holds NaN or infinity. */
export function assertFiniteWeights(file: string, name: string, data: ArrayLike<number>): void {
  const i = firstNonFinite(data);
  if (i >= 0) throw nonFiniteWeightError(file, name, i, data.length, data[i]!);
}

/**
 * Throws before anything is written to `where` when a tensor to write holds NaN or infinity:
 * `<where>: not written: tensor <name>: value <i> of <n> is NaN (<why>)`.
 */
export function assertFiniteToWrite(where: string, tensors: Iterable<readonly [string, { readonly data: ArrayLike<number> }]>, why = 'a non-finite value would make every output NaN'): void {
  for (const [name, t] of tensors) {
    const i = firstNonFinite(t.data);
    if (i >= 0) throw new RpvError(`${where}: not written: ${describeNonFinite(name, i, t.data.length, t.data[i]!)} (${why})`);
  }
}
