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

/**
 * Per dtype: the exponent bits of every element in a 32-bit word, and the word that carries each
 * element's exponent into its top bit when (and only when) they are all ones. Adding needs no
 * carry across elements: a masked element plus its carry stays within its own bits.
 */
const WORD_TESTS = {
  F32: { mask: 0x7f800000, carry: 0x00800000, top: 0x80000000, perWord: 1 },
  F16: { mask: 0x7c007c00, carry: 0x04000400, top: 0x80008000, perWord: 2 },
  BF16: { mask: 0x7f807f80, carry: 0x00800080, top: 0x80008000, perWord: 2 },
} as const;
export type ScannedDType = keyof typeof WORD_TESTS;

/** Words tested between two looks at the accumulated flags. */
const BLOCK_WORDS = 1024;

/**
 * Index of the first NaN or infinite element among `bytes` (whole little-endian elements of
 * `dtype`), -1 when there is none. Whole 32-bit words are tested a block at a time, flags ORed
 * together without a branch; only a flagged block is searched element by element.
 */
export function firstNonFiniteBits(bytes: Uint8Array, dtype: ScannedDType): number {
  const { mask, carry, top, perWord } = WORD_TESTS[dtype];
  const size = 4 / perWord;
  const count = Math.floor(bytes.byteLength / size);
  // Words start where the buffer is 4-byte aligned; elements before and after are looked at alone
  // (all of them when the elements themselves are not aligned).
  const offset = bytes.byteOffset % 4;
  const lead = offset === 0 ? 0 : offset % size !== 0 ? count : Math.min(count, (4 - offset) / size);
  const words = Math.floor(((count - lead) * size) / 4);
  const view = words > 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset + lead * size, words) : new Uint32Array(0);
  const single = (from: number, to: number): number => {
    for (let i = from; i < to; i++) if (isNonFiniteAt(bytes, dtype, i)) return i;
    return -1;
  };
  const head = single(0, lead);
  if (head >= 0) return head;
  for (let b = 0; b < words; b += BLOCK_WORDS) {
    const end = Math.min(words, b + BLOCK_WORDS);
    let flags = 0;
    for (let i = b; i < end; i++) flags |= ((view[i]! & mask) + carry) | 0;
    if ((flags & top) !== 0) return single(lead + b * perWord, lead + end * perWord);
  }
  return single(lead + words * perWord, count);
}

function isNonFiniteAt(bytes: Uint8Array, dtype: ScannedDType, index: number): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') return (view.getUint32(index * 4, true) & 0x7f800000) === 0x7f800000;
  const e = dtype === 'F16' ? 0x7c00 : 0x7f80;
  return (view.getUint16(index * 2, true) & e) === e;
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
