import { describe, expect, it } from 'vitest';
import { float16ToFloat32 } from '../../src/util/float16.js';
import { halfToFloat } from '../../src/loader/decode.js';

describe('halfToFloat (the workers float16 -> float32 conversion)', () => {
  it('equals the shard reader conversion for every half bit pattern, at every alignment', () => {
    const all = Uint16Array.from({ length: 65536 + 3 }, (_, i) => i & 0xffff);
    for (const offset of [0, 1, 2, 3]) {
      for (const length of [0, 1, 2, 5, 65536]) {
        const src = all.subarray(offset, offset + length);
        const got = new Float32Array(length);
        halfToFloat(src, got);
        expect(got).toEqual(float16ToFloat32(src));
      }
    }
  });
});
