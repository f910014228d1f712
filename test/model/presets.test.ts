/**
 * Real-shaped model folders without a hub: the presets carry the published shapes of
 * Qwen2.5-0.5B/1.5B/7B (parameter counts as transformers reports them), large folders shard like
 * save_pretrained, and per-tensor seeded weights load the same from one file or from shards.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, loadModel, writeTinyModel } from '../../src/index.js';
import { tinyModelTensors } from '../../src/model/tiny.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'rpv-presets-'));

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

describe('model presets', () => {
  // Parameter counts of the published checkpoints (Qwen2.5 model cards: 0.49B, 1.54B, 7.61B).
  const PUBLISHED: [string, number, Record<string, number | boolean>][] = [
    ['qwen2.5-0.5b', 494_032_768, { hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2, vocabSize: 151936 }],
    ['qwen2.5-1.5b', 1_543_714_304, { hiddenSize: 1536, intermediateSize: 8960, numLayers: 28, numHeads: 12, numKvHeads: 2, vocabSize: 151936 }],
    ['qwen2.5-7b', 7_615_616_512, { hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28, numKvHeads: 4, vocabSize: 152064 }],
  ];
  for (const [preset, parameters] of PUBLISHED) {
    it(`${preset} has the published parameter count, in BF16`, () => {
      const t = tinyModelTensors({ preset: preset as 'qwen2.5-0.5b' });
      expect(t.parameters).toBe(parameters);
      expect(t.dtype).toBe('BF16');
    });
  }

  it('lets explicit options override a preset', () => {
    const t = tinyModelTensors({ preset: 'qwen2.5-0.5b', numLayers: 2, vocabSize: 1000 });
    expect(t.shapes.get('model.embed_tokens.weight')).toEqual([1000, 896]);
    expect(t.shapes.has('model.layers.1.mlp.down_proj.weight')).toBe(true);
    expect(t.shapes.has('model.layers.2.mlp.down_proj.weight')).toBe(false);
  });

  it('refuses an unknown preset by name', async () => {
    await expect(writeTinyModel(path.join(tmp(), 'x'), { preset: 'qwen9' as never })).rejects.toThrow(
      'make-tiny-model: unknown preset "qwen9"; expected one of qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b',
    );
  });
});

describe('large-model layout', () => {
  it('shards like save_pretrained and loads the same weights from shards as from one file, mapped or not', async () => {
    const base = { preset: 'qwen2.5-0.5b' as const, numLayers: 2, vocabSize: 2048, hiddenSize: 64, intermediateSize: 96, numHeads: 4, numKvHeads: 2, perTensorSeeds: true, seed: 3 };
    const single = path.join(tmp(), 'single');
    const sharded = path.join(tmp(), 'sharded');
    await writeTinyModel(single, base);
    await writeTinyModel(sharded, { ...base, maxShardBytes: 120_000 });
    expect(readdirSync(single).filter((f) => f.endsWith('.safetensors'))).toEqual(['model.safetensors']);
    const shards = readdirSync(sharded).filter((f) => f.endsWith('.safetensors')).sort();
    expect(shards.length).toBeGreaterThan(1);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const index = JSON.parse(readFileSync(path.join(sharded, 'model.safetensors.index.json'), 'utf8'));
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
    const ids = Int32Array.from({ length: 12 }, (_, i) => 7 + i * 13);
    const logits: Float32Array[] = [];
    for (const dir of [single, sharded]) {
      for (const weights of ['mapped', 'tensors'] as const) {
        const model = await loadModel(dir, { weights, log: null });
        if (weights === 'mapped' && dir === sharded) expect(model.weights.mappedFiles!.length).toBe(shards.length);
        const out = model.logits({ inputIds: ids, batch: 1 });
        logits.push((await out.data()) as Float32Array);
        out.dispose();
        model.dispose();
      }
    }
    for (const l of logits.slice(1)) {
      let err = 0;
      for (let i = 0; i < l.length; i++) err = Math.max(err, Math.abs(l[i] - logits[0][i]));
      expect(err).toBeLessThan(1e-5);
    }
  });
});
