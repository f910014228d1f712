/**
 * A small deterministic random number generator (xoshiro128**, seeded through splitmix32) whose
 * whole state is four 32-bit words, so a checkpoint can save it and a resumed run draws exactly
 * the numbers the uninterrupted run would have drawn (dropout seeds, sampling, profile choice).
 */
export interface RngState {
  algorithm: 'xoshiro128**';
  words: [number, number, number, number];
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Rng {
  private s: Uint32Array;

  constructor(seed: number | RngState) {
    if (typeof seed === 'number') {
      const sm = splitmix32(seed);
      this.s = new Uint32Array([sm(), sm(), sm(), sm()]);
      if (this.s.every((w) => w === 0)) this.s[0] = 1;
    } else {
      this.s = new Uint32Array(seed.words);
    }
  }

  /** Next unsigned 32-bit integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** A seed for a tfjs op (`tf.dropout(x, rate, undefined, seed)`), drawn from this stream. */
  nextSeed(): number {
    return this.nextUint32() % 2147483647;
  }

  state(): RngState {
    return { algorithm: 'xoshiro128**', words: [this.s[0]!, this.s[1]!, this.s[2]!, this.s[3]!] };
  }
}

/** FNV-1a 32-bit hash (with a final mix) of a string: stable across runs and machines (used for splits and choices). */
export function hashString(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  const bytes = Buffer.from(text, 'utf8');
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // murmur3's finaliser, so that every bit depends on every input byte.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}
