/**
 * Every seeded random stream and stable hash in rpv. Nothing uses Math.random: the loader's order,
 * the held-out split, adapter initialisation, dropout masks and sampling must be the same on every
 * machine, Node version and worker count, and a resumed run must draw what the uninterrupted run
 * would have drawn. Two generators, each for what it serves:
 *
 * - `Rng` (xoshiro128**, seeded through splitmix32): four words of state that a checkpoint saves;
 *   seeded from a number (training) or from a key of parts (`Rng.fromKey('rpv-window', seed, epoch,
 *   w)`, the loader's order and the rating tools' shuffles), with unbiased integer sampling.
 * - `Mulberry32`: one word of state, fast enough to fill weight tensors (adapter initialisation,
 *   tiny models, the sample export's dialogues).
 *
 * Hashes: `fnv1a32` (FNV-1a), `fmix32` (murmur3's finaliser) and `hashString` (both, for splits and
 * choices). The dropout mask's counter-based draw (`fmix32((i * 0x9E3779B1) ^ seedMix)`) is
 * duplicated in C++ in src/native/pointwise.cc: change both or neither.
 */

/** murmur3's 32-bit finaliser: every output bit depends on every input bit. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * 32-bit FNV-1a of a string, started at `0x811c9dc5 ^ seed`. `units` says what is hashed: the
 * UTF-8 bytes (default) or the UTF-16 code units (the loader's keys; equal for ASCII text).
 */
export function fnv1a32(text: string, seed = 0, units: 'utf8' | 'utf16' = 'utf8'): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  if (units === 'utf16') {
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  } else {
    for (const b of Buffer.from(text, 'utf8')) {
      h ^= b;
      h = Math.imul(h, 0x01000193);
    }
  }
  return h >>> 0;
}

/** FNV-1a of the UTF-8 bytes then murmur3's finaliser: stable across runs and machines (splits, choices). */
export function hashString(text: string, seed = 0): number {
  return fmix32(fnv1a32(text, seed));
}

/** splitmix32 from `seed`: a stream of well-mixed words, used to fill a generator's state. */
export function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    return fmix32(s);
  };
}

/** The saved state of an `Rng`, as a checkpoint stores it. */
export interface RngState {
  algorithm: 'xoshiro128**';
  words: [number, number, number, number];
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** xoshiro128**: four 32-bit words of state, seeded through splitmix32. */
export class Rng {
  private s: Uint32Array;

  /** From a number seed (through splitmix32) or from a saved state. */
  constructor(seed: number | RngState) {
    if (typeof seed === 'number') {
      const sm = splitmix32(seed);
      this.s = new Uint32Array([sm(), sm(), sm(), sm()]);
      if (this.s.every((w) => w === 0)) this.s[0] = 1;
    } else {
      this.s = new Uint32Array(seed.words);
    }
  }

  /** A generator determined by `parts` alone: joined with ':' and hashed (FNV-1a of the UTF-16 code units). */
  static fromKey(...parts: (string | number)[]): Rng {
    return new Rng(fnv1a32(parts.join(':'), 0, 'utf16'));
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

  /** Uniform integer in [0, n), n <= 2^32, without modulo bias (rejection sampling). */
  below(n: number): number {
    if (n <= 1) return 0;
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** Fisher–Yates shuffle in place of `a[from, to)`. */
  shuffle<T extends { [i: number]: number; length: number }>(a: T, from = 0, to = a.length): T {
    for (let i = to - 1; i > from; i--) {
      const j = from + this.below(i - from + 1);
      const tmp = a[i]!;
      a[i] = a[j]!;
      a[j] = tmp;
    }
    return a;
  }

  state(): RngState {
    return { algorithm: 'xoshiro128**', words: [this.s[0]!, this.s[1]!, this.s[2]!, this.s[3]!] };
  }
}

/** mulberry32 with Box-Muller normals: one word of state, fast enough to fill weight tensors. */
export class Mulberry32 {
  private s: number;

  /** Starts from `state` as given (see `seededRandom` for the stream models draw from). */
  constructor(state: number) {
    this.s = state >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n) (floor of next() * n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }

  /** One value, drawn with probability proportional to its weight. */
  weighted<T>(entries: ReadonlyArray<[T, number]>): T {
    const total = entries.reduce((s, [, w]) => s + w, 0);
    let r = this.next() * total;
    for (const [v, w] of entries) {
      r -= w;
      if (r < 0) return v;
    }
    return entries[entries.length - 1]![0];
  }

  uniform(n: number, low: number, high: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = low + (high - low) * this.next();
    return out;
  }

  /** Fills `out` with half * (2u - 1), u uniform in [0, 1): values in [-half, half). */
  fillSymmetric(out: Float32Array, half: number): Float32Array {
    let s = this.s;
    for (let i = 0; i < out.length; i++) {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = Math.imul(s ^ (s >>> 15), s | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = half * ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1);
    }
    this.s = s;
    return out;
  }

  normal(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u = Math.max(this.next(), 1e-12);
      const v = this.next();
      const r = Math.sqrt(-2 * Math.log(u)) * std;
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }

  /** Current state, to save and resume (`new Mulberry32(saved)`). */
  get state(): number {
    return this.s;
  }
}

/** The stream adapter initialisation and tiny models draw from: mulberry32 started at seed ^ 0x9e3779b9. */
export function seededRandom(seed: number): Mulberry32 {
  return new Mulberry32((seed >>> 0) ^ 0x9e3779b9);
}
