// Each family's features (tiny random towers in the real tensor layout, written by writeTinyTower)
// against the independent float64 implementation of tower-reference.ts, to 1e-4 relative, for
// layer -1 / -2 / 0, tokens patches / cls / mean, pool=2 and shuffle=0.5; on the native path (wasm,
// mapped weights, fused non-causal attention) and on tfjs alone (cpu backend, float32 tensors).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/index.js';
import { loadVisionTower, writeTinyTower, type TowerSettings } from '../../src/vision/index.js';
import { Mulberry32 } from '../../src/util/random.js';
import { readWeights, referenceFeatures, referenceHiddenStates, type Family, type RefConfig, type RefSettings } from './tower-reference.js';

const root = mkdtempSync(path.join(tmpdir(), 'rpv-tower-'));

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

interface Variant {
  name: string;
  family: Family;
  overrides?: Record<string, unknown>;
  ref: RefConfig;
}

const VARIANTS: Variant[] = [
  { name: 'clip', family: 'clip', ref: { family: 'clip', hidden: 32, heads: 4, layers: 3, image: 32, patch: 8, eps: 1e-5, act: 'quick_gelu' } },
  { name: 'siglip', family: 'siglip', ref: { family: 'siglip', hidden: 32, heads: 4, layers: 3, image: 32, patch: 8, eps: 1e-6, act: 'gelu_pytorch_tanh' } },
  { name: 'internvit', family: 'internvit', ref: { family: 'internvit', hidden: 32, heads: 4, layers: 3, image: 32, patch: 8, eps: 1e-6, act: 'gelu' } },
  {
    name: 'internvit-6b-style (rms_norm, qk_normalization)',
    family: 'internvit',
    overrides: { norm_type: 'rms_norm', qk_normalization: true, qkv_bias: true },
    ref: { family: 'internvit', hidden: 32, heads: 4, layers: 3, image: 32, patch: 8, eps: 1e-6, act: 'gelu', rms: true, qkNorm: true },
  },
];

const FRAMES = 3;

function settingsFor(family: Family): { settings: TowerSettings; ref: RefSettings }[] {
  const shuffleDefault = family === 'internvit' ? 0.5 : 1;
  const layerDefault = family === 'clip' ? -2 : -1;
  const list: { settings: TowerSettings; ref: RefSettings }[] = [
    { settings: {}, ref: { layer: layerDefault, tokens: 'patches', pool: 1, shuffle: shuffleDefault } },
    { settings: { layer: -1, shuffle: 1 }, ref: { layer: -1, tokens: 'patches', pool: 1, shuffle: 1 } },
    { settings: { layer: -2, shuffle: 1 }, ref: { layer: -2, tokens: 'patches', pool: 1, shuffle: 1 } },
    { settings: { layer: 0, shuffle: 1 }, ref: { layer: 0, tokens: 'patches', pool: 1, shuffle: 1 } },
    { settings: { layer: -1, tokens: 'mean' }, ref: { layer: -1, tokens: 'mean', pool: 1, shuffle: 1 } },
    { settings: { layer: -2, pool: 2, shuffle: 1 }, ref: { layer: -2, tokens: 'patches', pool: 2, shuffle: 1 } },
    { settings: { layer: -1, shuffle: 0.5 }, ref: { layer: -1, tokens: 'patches', pool: 1, shuffle: 0.5 } },
    { settings: { layer: -2, shuffle: 0.5 }, ref: { layer: -2, tokens: 'patches', pool: 1, shuffle: 0.5 } },
  ];
  if (family !== 'siglip') list.push({ settings: { layer: -1, tokens: 'cls' }, ref: { layer: -1, tokens: 'cls', pool: 1, shuffle: 1 } });
  return list;
}

const pixels = new Mulberry32(7).normal(FRAMES * 3 * 32 * 32, 1);

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`vision towers on ${backend === 'wasm' ? 'the native kernels (wasm, mapped weights, fused attention)' : 'tfjs alone (cpu backend)'}`, () => {
    beforeAll(async () => {
      await initBackend({ backend, log: null });
    });
    for (const v of VARIANTS) {
      describe(v.name, () => {
        const dir = path.join(root, v.name.replace(/\W+/g, '-'));
        let states: Float64Array[][] = [];
        beforeAll(async () => {
          await writeTinyTower(dir, { family: v.family, preset: 'tiny', seed: 3, overrides: v.overrides });
          const weights = await readWeights(path.join(dir, 'model.safetensors'));
          states = Array.from({ length: FRAMES }, (_, f) => referenceHiddenStates(v.ref, weights, pixels.subarray(f * 3072, (f + 1) * 3072)));
        });
        for (const { settings, ref } of settingsFor(v.family)) {
          it(`#${JSON.stringify(settings)} equals the float64 reference`, async () => {
            // Two frames per pass: 3 frames go through as 2 + 1.
            const tower = await loadVisionTower(dir, settings, { weights: backend === 'wasm' ? 'mapped' : 'tensors', framesPerPass: 2 });
            try {
              const got = await tower.encode(pixels, FRAMES);
              const per = tower.tokensPerFrame * tower.width;
              expect(got.length).toBe(FRAMES * per);
              for (let f = 0; f < FRAMES; f++) {
                const want = referenceFeatures(v.ref, states[f], ref);
                expect(relErr(got.subarray(f * per, (f + 1) * per), want)).toBeLessThan(1e-4);
              }
            } finally {
              await tower.dispose();
            }
          });
        }
      });
    }
  });
}

afterAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});
