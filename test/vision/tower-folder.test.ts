// Folders as they come from the hub: the vision half of CLIPModel / SiglipModel / InternVL chat
// folders (nested config, other tensors beside), sharded weights (model.safetensors.index.json),
// BF16 and F16 weights used in place; each gives the features of the plain tower folder.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/index.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../../src/util/safetensors.js';
import { Mulberry32 } from '../../src/util/random.js';
import { loadVisionTower, writeTinyTower, type TowerSettings } from '../../src/vision/index.js';
import { readWeights, referenceFeatures, referenceHiddenStates } from './tower-reference.js';

const root = mkdtempSync(path.join(tmpdir(), 'rpv-tower-folder-'));
const pixels = new Mulberry32(11).normal(2 * 3 * 32 * 32, 1);

async function encode(dir: string, settings: TowerSettings = {}): Promise<Float32Array> {
  const tower = await loadVisionTower(dir, settings, { weights: 'mapped' });
  try {
    return await tower.encode(pixels, 2);
  } finally {
    await tower.dispose();
  }
}

async function tensorsOf(dir: string): Promise<Map<string, SafetensorsInput>> {
  const file = await readSafetensors(path.join(dir, 'model.safetensors'));
  return new Map([...file.tensors].map(([name, t]) => [name, { shape: t.shape, data: t.data as Float32Array }]));
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

describe('vision halves of whole-model folders', () => {
  it('CLIPModel: vision_config, text tensors beside', async () => {
    const plain = path.join(root, 'clip');
    await writeTinyTower(plain, { family: 'clip', seed: 5 });
    const whole = path.join(root, 'clip-model');
    const vision = JSON.parse(readFileSync(path.join(plain, 'config.json'), 'utf8'));
    await writeTinyTower(whole, { family: 'clip', seed: 5 }); // preprocessor_config.json
    writeFileSync(path.join(whole, 'config.json'), JSON.stringify({ architectures: ['CLIPModel'], model_type: 'clip', vision_config: { ...vision, model_type: 'clip_vision_model' }, text_config: { hidden_size: 16 } }));
    const tensors = await tensorsOf(plain);
    tensors.set('text_model.embeddings.token_embedding.weight', { shape: [10, 16], data: new Float32Array(160) });
    tensors.set('logit_scale', { shape: [], data: Float32Array.of(2.6) });
    await writeSafetensors(path.join(whole, 'model.safetensors'), tensors);
    expect(await encode(whole)).toEqual(await encode(plain));
  });

  it('InternVL chat: vision_model. prefix, select_layer and downsample_ratio from the top config', async () => {
    const plain = path.join(root, 'internvit');
    await writeTinyTower(plain, { family: 'internvit', seed: 6 });
    const chat = path.join(root, 'internvl-chat');
    await writeTinyTower(chat, { family: 'internvit', seed: 6 });
    const vision = JSON.parse(readFileSync(path.join(plain, 'config.json'), 'utf8'));
    writeFileSync(path.join(chat, 'config.json'), JSON.stringify({
      architectures: ['InternVLChatModel'], model_type: 'internvl_chat', select_layer: -2, downsample_ratio: 0.5, ps_version: 'v2', template: 'internvl2_5',
      vision_config: vision, llm_config: { model_type: 'qwen2' },
    }));
    const tensors = new Map([...(await tensorsOf(plain))].map(([name, t]) => [`vision_model.${name}`, t]));
    tensors.set('mlp1.0.weight', { shape: [128], data: new Float32Array(128) });
    tensors.set('language_model.model.embed_tokens.weight', { shape: [4, 8], data: new Float32Array(32) });
    // Sharded, as InternVL folders are.
    const names = [...tensors.keys()];
    const half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, list] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(chat, file), new Map(list.map((n) => [n, tensors.get(n)!])));
      for (const n of list) weightMap[n] = file;
    }
    writeFileSync(path.join(chat, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    // The chat folder's default layer is its select_layer (-2); shuffle 0.5 either way.
    const tower = await loadVisionTower(chat, {});
    expect(tower.settings).toEqual({ layer: -2, tokens: 'patches', pool: 1, shuffle: 0.5 });
    expect([tower.tokensPerFrame, tower.width]).toEqual([4, 128]);
    await tower.dispose();
    // model.safetensors (single) is also present from writeTinyTower: the index wins, as for the language model.
    expect(await encode(chat)).toEqual(await encode(plain, { layer: -2 }));
  });
});

describe('stored dtypes used in place', () => {
  for (const dtype of ['BF16', 'F16'] as const) {
    it(`${dtype} SigLIP equals the float64 reference on the same (rounded) weights`, async () => {
      const dir = path.join(root, `siglip-${dtype}`);
      await writeTinyTower(dir, { family: 'siglip', seed: 8, dtype });
      const ref = { family: 'siglip' as const, hidden: 32, heads: 4, layers: 3, image: 32, patch: 8, eps: 1e-6, act: 'gelu_pytorch_tanh' };
      const weights = await readWeights(path.join(dir, 'model.safetensors'));
      const got = await encode(dir, { layer: -1 });
      const per = got.length / 2;
      for (let f = 0; f < 2; f++) {
        const want = referenceFeatures(ref, referenceHiddenStates(ref, weights, pixels.subarray(f * 3072, (f + 1) * 3072)), { layer: -1, tokens: 'patches', pool: 1, shuffle: 1 });
        let scale = 0;
        let err = 0;
        for (let i = 0; i < per; i++) {
          scale = Math.max(scale, Math.abs(want[i]));
          err = Math.max(err, Math.abs(got[f * per + i] - want[i]));
        }
        expect(err / scale).toBeLessThan(1e-4);
      }
    });
  }
});

describe('memory', () => {
  it('encode leaves no tensor behind, and dispose frees the weights', async () => {
    const { tfCore } = await import('../../src/model/backend.js');
    const tf = await tfCore();
    const dir = path.join(root, 'internvit-memory');
    await writeTinyTower(dir, { family: 'internvit', seed: 9 });
    const before = tf.memory().numTensors;
    for (const weights of ['mapped', 'tensors'] as const) {
      const tower = await loadVisionTower(dir, {}, { weights, framesPerPass: 1 });
      const loaded = tf.memory().numTensors;
      await tower.encode(pixels, 2);
      expect(tf.memory().numTensors).toBe(loaded);
      await tower.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});
