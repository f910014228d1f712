// Model folders whose config.json and weights disagree are refused by name before anything is
// decoded: a weight in an integer dtype, tensors the config does not use, a model_type that does
// not fit the weight names. The same checks guard loadModel and merge-lora.
import { beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend, loadModel, mergeLora, saveAdapter, writeTinyModel } from '../../src/index.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../../src/util/safetensors.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'rpv-folder-'));
let llama: string;
let qwen: string;
let adapter: string;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
  llama = path.join(tmp(), 'llama');
  await writeTinyModel(llama, { arch: 'llama', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 300, seed: 3 });
  qwen = path.join(tmp(), 'qwen');
  await writeTinyModel(qwen, { arch: 'qwen2', hiddenSize: 32, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 300, seed: 3 });
  const model = await loadModel(llama);
  model.addLora({ rank: 2, alpha: 4, dropout: 0, targetModules: ['q'], useRslora: false, seed: 1 });
  adapter = path.join(tmp(), 'adapter');
  await saveAdapter(model, adapter);
  model.dispose();
});

function copy(dir: string): string {
  const out = path.join(tmp(), path.basename(dir));
  cpSync(dir, out, { recursive: true });
  return out;
}

function editConfig(dir: string, edit: Record<string, unknown>): void {
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...edit }));
}

describe('model folder checks', () => {
  it('refuses a weight stored in an integer dtype, naming tensor and dtype', async () => {
    const dir = copy(llama);
    const file = path.join(dir, 'model.safetensors');
    const tensors = new Map<string, SafetensorsInput>();
    for (const [n, t] of (await readSafetensors(file)).tensors) tensors.set(n, { shape: t.shape, data: t.data });
    const q = tensors.get('model.layers.1.self_attn.q_proj.weight')!;
    tensors.set('model.layers.1.self_attn.q_proj.weight', { shape: q.shape, data: Int32Array.from(q.data, (v) => Math.round(v * 1000)), dtype: 'I32' });
    await writeSafetensors(file, tensors);
    const message = `${file}: tensor model.layers.1.self_attn.q_proj.weight: dtype I32 where a float weight is needed (F32, F16, BF16 or F64)`;
    await expect(loadModel(dir)).rejects.toThrow(message);
    await expect(mergeLora(dir, adapter, path.join(tmp(), 'out'))).rejects.toThrow(message);
  });

  it('refuses tensors the config does not use (config 1 layer, weights 2)', async () => {
    const dir = copy(llama);
    editConfig(dir, { num_hidden_layers: 1 });
    await expect(loadModel(dir)).rejects.toThrow(
      `${path.join(dir, 'config.json')}: does not fit the weights: 9 tensors in model.safetensors are not used (first: model.layers.1.input_layernorm.weight; num_hidden_layers is 1, the weights have layer 1)`,
    );
    await expect(mergeLora(dir, adapter, path.join(tmp(), 'out'))).rejects.toThrow(`${path.join(dir, 'config.json')}: does not fit the weights: 9 tensors`);
    const tied = copy(llama);
    editConfig(tied, { tie_word_embeddings: true });
    await expect(loadModel(tied)).rejects.toThrow(
      `${path.join(tied, 'config.json')}: does not fit the weights: 1 tensor in model.safetensors is not used (first: lm_head.weight; tie_word_embeddings is true, so lm_head.weight would be ignored)`,
    );
  });

  it('names a model_type that does not fit the weight names', async () => {
    const asQwen = copy(llama);
    editConfig(asQwen, { model_type: 'qwen2' });
    await expect(loadModel(asQwen)).rejects.toThrow(
      `${path.join(asQwen, 'config.json')}: model_type "qwen2" does not fit the weights: model.safetensors holds no model.layers.0.self_attn.q_proj.bias, which qwen2 always has (a llama model?)`,
    );
    const asLlama = copy(qwen);
    editConfig(asLlama, { model_type: 'llama' });
    await expect(loadModel(asLlama)).rejects.toThrow(
      `${path.join(asLlama, 'config.json')}: model_type "llama" does not fit the weights: ${path.join(asLlama, 'model.safetensors')} holds model.layers.0.self_attn.q_proj.bias, and llama without attention_bias has no attention biases (a qwen2 model?)`,
    );
  });
});
