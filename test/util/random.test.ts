// Pins the first values of every seeded stream and hash to what they drew before these generators
// were gathered into one module: a change here changes the loader's order, the held-out split,
// adapter initialisation, dropout masks or what a resumed checkpoint draws.
import { describe, expect, it } from 'vitest';
import { Mulberry32, Rng, fnv1a32, hashString, seededRandom } from '../../src/util/random.js';
import { dropoutDraw, dropoutMask } from '../../src/model/lora.js';

describe('Rng (xoshiro128**)', () => {
  it('from a key: the loader order and rating shuffles', () => {
    const l = Rng.fromKey('rpv-window', 7, 2, 'é3');
    expect([0, 1, 2, 3, 4].map(() => l.nextUint32())).toEqual([1289560299, 919531812, 1955965798, 3118623681, 3451024398]);
    expect([10, 3, 1000, 7, 2].map((n) => Rng.fromKey('rpv-shards', 42, 0).below(n))).toEqual([7, 0, 727, 2, 1]);
    const order = Rng.fromKey('rpv-blocks', 1, 3, 'shard-9').shuffle(Array.from({ length: 10 }, (_, i) => i));
    expect(order).toEqual([8, 2, 6, 5, 0, 1, 9, 4, 3, 7]);
  });

  it('from a number: training draws, and its saved state resumes the same stream', () => {
    const t = new Rng(42);
    expect([0, 1, 2].map(() => t.nextUint32())).toEqual([2837322924, 544945897, 479756282]);
    expect(t.nextFloat()).toBe(0.8149394164793193);
    expect(t.nextSeed()).toBe(339756180);
    const saved = t.state();
    expect(saved).toEqual({ algorithm: 'xoshiro128**', words: [1824647166, 603999424, 1022928101, 1623123832] });
    const resumed = new Rng(saved);
    expect(resumed.nextUint32()).toBe(t.nextUint32());
  });
});

describe('hashes', () => {
  it('hashString: the held-out split and per-sample choices', () => {
    expect([hashString('video-001', 42 ^ 0x5eed), hashString('héllo/d1', 3), hashString('')]).toEqual([3887707038, 1718356515, 2872998923]);
  });

  it('fnv1a32 hashes UTF-8 bytes or UTF-16 code units, equal for ASCII', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('rpv:1', 0, 'utf16')).toBe(fnv1a32('rpv:1'));
    expect(fnv1a32('é', 0, 'utf16')).not.toBe(fnv1a32('é'));
  });

  it('dropout draw: the same counter-based hash as src/native/pointwise.cc', () => {
    expect(dropoutDraw(0.1, 2, 12345)).toEqual({ seedMix: 1011272156, threshold: 429496729, keep: 2.2222222222222223 });
    const k = 2.6666667461395264;
    expect(Array.from(dropoutMask(16, 0.25, 2, 777))).toEqual([k, k, 0, 0, k, k, k, 0, 0, k, k, k, 0, 0, k, 0]);
  });
});

describe('Mulberry32', () => {
  it('seededRandom: adapter initialisation and tiny models', () => {
    const m = seededRandom(9);
    expect([m.next(), m.next()]).toEqual([0.5117232985794544, 0.19766752934083343]);
    expect(Array.from(m.normal(5, 0.02))).toEqual([0.035511504858732224, -0.021569181233644485, 0.026032013818621635, -0.005951047409325838, -0.00943000614643097]);
    expect(Array.from(m.uniform(3, -1, 1))).toEqual([0.6736658811569214, 0.4745253324508667, 0.7316868305206299]);
    expect(m.state).toBe(1326823223);
  });

  it('raw seed: the sample export dialogues', () => {
    const s = new Mulberry32(123);
    expect(s.next()).toBe(0.7872516233474016);
    expect(s.int(100)).toBe(17);
    expect(s.pick(['a', 'b', 'c', 'd'])).toBe('b');
    expect(s.shuffle([1, 2, 3, 4, 5, 6])).toEqual([1, 5, 3, 4, 6, 2]);
    const w = new Mulberry32(5);
    expect([0, 1, 2, 3, 4, 5].map(() => w.weighted<string>([['x', 1], ['y', 1], ['z', 1]]))).toEqual(['z', 'z', 'x', 'y', 'x', 'y']);
  });

  it('fillSymmetric: the streamed tiny model weights and native test inputs, continuing across calls', () => {
    const half = 0.02 * Math.sqrt(3);
    const r = new Mulberry32(hashString('layers.0.q_proj.weight', 5));
    const a = r.fillSymmetric(new Float32Array(2), half);
    const b = r.fillSymmetric(new Float32Array(2), half);
    expect([...a, ...b]).toEqual([-0.01981489546597004, 0.005280657671391964, 0.029526464641094208, -0.003680176567286253]);
    expect(Array.from(new Mulberry32(11).fillSymmetric(new Float32Array(4), 1))).toEqual([0.023174097761511803, 0.059892818331718445, 0.2162371277809143, 0.1803152710199356]);
  });
});
