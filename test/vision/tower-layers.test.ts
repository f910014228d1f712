// The shared pieces the towers are built from, against float64: GELU (erf, tanh, quick) and
// LayerNorm with bias, values and gradients, on the native kernels (wasm + addon, 1 and 2
// threads), on tfjs-wasm ops (RPV_NATIVE_ENCODER=0) and on the cpu backend; pixel shuffle on a
// grid of known values; the settings text and family detection, errors word for word.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/index.js';
import { gelu, type GeluKind } from '../../src/model/gelu.js';
import { layerNorm } from '../../src/model/layernorm.js';
import { loadNativeAddon, type NativeAddon } from '../../src/native/addon.js';
import { nativeEncoderAvailable } from '../../src/native/encoder.js';
import { Mulberry32 } from '../../src/util/random.js';
import { loadVisionTower, parseTowerSettings, pixelShuffle, averagePool, readTowerConfig, writeTinyTower } from '../../src/vision/index.js';
import { erf } from './tower-reference.js';

const addon = loadNativeAddon().addon as NativeAddon;
const originalThreads = addon.threads();
afterAll(() => addon.setThreads(originalThreads));
afterEach(() => {
  delete process.env.RPV_NATIVE_ENCODER;
});

const GELU64: Record<GeluKind, (x: number) => number> = {
  erf: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  quick: (x) => x / (1 + Math.exp(-1.702 * x)),
};

/** Central difference in float64 (h small enough for 1e-9 accuracy on these smooth functions). */
const slope = (f: (x: number) => number, x: number) => (f(x + 1e-5) - f(x - 1e-5)) / 2e-5;

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-30;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

const SIZES = [1, 7, 40_001];
const MODES = [
  { name: 'native kernels, 1 thread', backend: 'wasm', threads: 1, env: undefined },
  { name: 'native kernels, 2 threads', backend: 'wasm', threads: 2, env: undefined },
  { name: 'tfjs-wasm ops', backend: 'wasm', threads: 2, env: '0' },
  { name: 'cpu backend', backend: 'cpu', threads: 2, env: undefined },
] as const;

for (const mode of MODES) {
  describe(`GELU and LayerNorm, ${mode.name}`, () => {
    const setup = async () => {
      await initBackend({ backend: mode.backend, log: null });
      addon.setThreads(mode.threads);
      if (mode.env) process.env.RPV_NATIVE_ENCODER = mode.env;
      expect(nativeEncoderAvailable()).toBe(mode.backend === 'wasm' && mode.env === undefined);
    };
    for (const kind of ['erf', 'tanh', 'quick'] as const) {
      for (const n of SIZES) {
        it(`gelu ${kind}, ${n} values: value and gradient`, async () => {
          await setup();
          const x = new Mulberry32(n).normal(n, 3);
          const dy = new Mulberry32(n + 1).normal(n, 1);
          const { value, grad } = tf.tidy(() => {
            const xt = tf.tensor1d(x);
            const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gelu(tf, t, kind), tf.tensor1d(dy))))(xt);
            return { value: gelu(tf, xt, kind).dataSync().slice(), grad: g.dataSync().slice() };
          });
          expect(maxRel(value, Array.from(x, GELU64[kind]))).toBeLessThan(2e-6);
          expect(maxRel(grad, Array.from(x, (v, i) => dy[i] * slope(GELU64[kind], v)))).toBeLessThan(2e-6);
        });
      }
    }
    for (const [rows, cols] of [[1, 1], [3, 7], [130, 384]] as const) {
      for (const withBias of [true, false]) {
        it(`layerNorm [${rows}, ${cols}]${withBias ? ' with bias' : ''}: value and gradient`, async () => {
          await setup();
          const rng = new Mulberry32(rows * cols);
          const x = Float32Array.from(rng.normal(rows * cols, 2), (v, i) => v + (i % cols) * 0.1 + 3);
          const w = Float32Array.from(rng.normal(cols, 0.3), (v) => v + 1);
          const b = rng.normal(cols, 0.3);
          const dy = rng.normal(rows * cols, 1);
          const eps = 1e-5;
          const { value, grad } = tf.tidy(() => {
            const wt = tf.tensor1d(w);
            const bt = withBias ? tf.tensor1d(b) : undefined;
            const xt = tf.tensor2d(x, [rows, cols]);
            const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(layerNorm(tf, t, wt, bt, eps), tf.tensor2d(dy, [rows, cols]))))(xt);
            return { value: layerNorm(tf, xt, wt, bt, eps).dataSync().slice(), grad: g.dataSync().slice() };
          });
          // float64 reference: the value; the gradient in closed form, itself checked by central
          // differences of sum(dy * y) on the first row.
          const stats = (row: Float64Array) => {
            const m = row.reduce((a, v) => a + v, 0) / cols;
            return { m, r: 1 / Math.sqrt(row.reduce((a, v) => a + (v - m) ** 2, 0) / cols + eps) };
          };
          const norm64 = (row: Float64Array) => {
            const { m, r } = stats(row);
            return Array.from(row, (v, j) => (v - m) * r * w[j] + (withBias ? b[j] : 0));
          };
          const want = new Float64Array(rows * cols);
          const wantGrad = new Float64Array(rows * cols);
          for (let r = 0; r < rows; r++) {
            const row = Float64Array.from(x.subarray(r * cols, (r + 1) * cols));
            want.set(norm64(row), r * cols);
            const { m, r: k } = stats(row);
            const g = Array.from(row, (_, j) => dy[r * cols + j] * w[j]);
            const xhat = Array.from(row, (v) => (v - m) * k);
            const mg = g.reduce((a, v) => a + v, 0) / cols;
            const mgx = g.reduce((a, v, j) => a + v * xhat[j], 0) / cols;
            for (let j = 0; j < cols; j++) wantGrad[r * cols + j] = k * (g[j] - mg - xhat[j] * mgx);
            if (r === 0) {
              const loss = (v: Float64Array) => norm64(v).reduce((a, y, j) => a + y * dy[j], 0);
              const numeric = Array.from(row, (_, j) => {
                const plus = Float64Array.from(row);
                const minus = Float64Array.from(row);
                plus[j] += 1e-5;
                minus[j] -= 1e-5;
                return (loss(plus) - loss(minus)) / 2e-5;
              });
              expect(maxRel(wantGrad.subarray(0, cols), numeric)).toBeLessThan(1e-6);
            }
          }
          expect(maxRel(value, want)).toBeLessThan(5e-6);
          expect(maxRel(grad, wantGrad)).toBeLessThan(5e-5);
        });
      }
    }
  });
}

describe('pixel shuffle and pooling', () => {
  it('moves a 4x4 grid of known values into 2x2 tokens of 4 as InternVL (ps_version v2) does', () => {
    // value = 10 * row + column, one channel
    const grid = Float32Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 4) + (i % 4));
    expect(Array.from(pixelShuffle(grid, 1, 4, 4, 1, 0.5))).toEqual([0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33]);
  });
  it('keeps channels together within a neighbour (2 channels)', () => {
    const grid = Float32Array.from({ length: 2 * 2 * 2 }, (_, i) => i);
    // [row][col][ch]: (0,0)=[0,1] (0,1)=[2,3] (1,0)=[4,5] (1,1)=[6,7]
    expect(Array.from(pixelShuffle(grid, 1, 2, 2, 2, 0.5))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
  it('averages 2x2 blocks', () => {
    const grid = Float32Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 4) + (i % 4));
    expect(Array.from(averagePool(grid, 1, 4, 4, 1, 2))).toEqual([5.5, 7.5, 25.5, 27.5]);
  });
});

describe('settings and families', () => {
  it('parses the settings text', () => {
    expect(parseTowerSettings('layer=-2,tokens=mean,pool=2,shuffle=0.5')).toEqual({ layer: -2, tokens: 'mean', pool: 2, shuffle: 0.5 });
    expect(parseTowerSettings('')).toEqual({});
  });
  it('refuses bad settings naming the key', () => {
    expect(() => parseTowerSettings('layers=2')).toThrow('hf encoder settings: unknown key "layers" (expected layer, tokens, pool, shuffle)');
    expect(() => parseTowerSettings('tokens=all')).toThrow('hf encoder settings: tokens must be patches, cls or mean, found "all"');
    expect(() => parseTowerSettings('layer=1.5')).toThrow('hf encoder settings: layer must be an integer, found "1.5"');
    expect(() => parseTowerSettings('shuffle=0.3')).toThrow('hf encoder settings: shuffle must be 1/k for an integer k (e.g. 0.5), found "0.3"');
  });
  it('refuses another family naming its model_type', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-family-'));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'dinov2', architectures: ['Dinov2Model'] }));
    await expect(readTowerConfig(dir)).rejects.toThrow(
      `${dir}/config.json: model_type "dinov2" is not a vision tower rpv reads (clip, clip_vision_model, siglip, siglip_vision_model, intern_vit_6b, internvl_chat)`,
    );
  });
  it('reads the vision half of CLIPModel, SiglipModel and InternVL chat folders', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-family-'));
    const write = (cfg: object) => writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    write({ model_type: 'clip', vision_config: { patch_size: 16 }, text_config: {} });
    expect(await readTowerConfig(dir)).toMatchObject({ family: 'clip', prefix: 'vision_model.', hiddenSize: 768, patchSize: 16, imageSize: 224, act: 'quick', defaultLayer: -2 });
    write({ model_type: 'siglip', vision_config: { hidden_size: 1152, intermediate_size: 4304, num_hidden_layers: 27, num_attention_heads: 16, image_size: 384, patch_size: 14 } });
    expect(await readTowerConfig(dir)).toMatchObject({ family: 'siglip', prefix: 'vision_model.', act: 'tanh', classToken: false });
    write({
      model_type: 'internvl_chat', select_layer: -1, downsample_ratio: 0.5, ps_version: 'v2',
      vision_config: { model_type: 'intern_vit_6b', hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 448, patch_size: 14, norm_type: 'layer_norm', hidden_act: 'gelu' },
    });
    expect(await readTowerConfig(dir)).toMatchObject({ family: 'internvit', prefix: 'vision_model.', defaultShuffle: 0.5, defaultLayer: -1, norm: 'layer', fusedQkv: true, layerScale: true });
    write({ model_type: 'internvl_chat', ps_version: 'v1', vision_config: {} });
    await expect(readTowerConfig(dir)).rejects.toThrow(`${dir}/config.json: ps_version "v1": rpv implements InternVL's pixel shuffle v2 only (v1 leaves the grid transposed)`);
  });
  it('gives shapes and refusals of the settings at load', async () => {
    await initBackend({ backend: 'wasm', log: null });
    const dir = mkdtempSync(path.join(tmpdir(), 'rpv-family-'));
    await writeTinyTower(dir, { family: 'siglip', preset: 'tiny' });
    await expect(loadVisionTower(dir, { tokens: 'cls' })).rejects.toThrow(`hf:${dir}: tokens=cls: siglip has no class token (use tokens=mean)`);
    await expect(loadVisionTower(dir, { layer: 4 })).rejects.toThrow(`hf:${dir}: layer=4 is outside the tower's hidden states (0..3, or -1..-4)`);
    // pool takes any grid (avg_pool2d with ceil_mode): 4x4 pooled by 3 is 2x2 (test/vision/pool.test.ts).
    const pooled3 = await loadVisionTower(dir, { pool: 3 });
    expect(pooled3.tokensPerFrame).toBe(4);
    await pooled3.dispose();
    const tower = await loadVisionTower(dir, { pool: 2 });
    expect([tower.tokensPerFrame, tower.width, tower.imageSize]).toEqual([4, 32, 32]);
    expect(tower.id).toMatch(/^hf:siglip\/siglip_vision_model#layer=-1,tokens=patches,pool=2,shuffle=1@[0-9a-f]{16}$/);
    expect(tower.preprocessor.image_processor_type).toBe('SiglipImageProcessor');
    await tower.dispose();
  });
});
