import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, cpSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend, loadModel, writeTinyModel } from '../../src/index.js';
import { readSafetensors, writeSafetensors } from '../../src/util/safetensors.js';
import { parseConfig } from '../../src/model/config.js';

let base: string;
const tmp = () => mkdtempSync(path.join(tmpdir(), 'rpv-load-'));

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
  base = path.join(tmp(), 'tiny');
  await writeTinyModel(base, { arch: 'llama', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 300, seed: 3 });
});

function copyModel(): string {
  const dir = path.join(tmp(), 'm');
  cpSync(base, dir, { recursive: true });
  return dir;
}

async function logitsOf(dir: string): Promise<Float32Array> {
  const model = await loadModel(dir);
  const ids = model.tokenizer!.encode('Hello world, 你好');
  const out = model.logits({ inputIds: ids, batch: 1 });
  const data = (await out.data()) as Float32Array;
  out.dispose();
  model.dispose();
  return data;
}

describe('loading Hugging Face folders', () => {
  it('rejects an unsupported architecture, naming it and the supported ones', async () => {
    const dir = copyModel();
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'mistral' }));
    await expect(loadModel(dir)).rejects.toThrow(`${path.join(dir, 'config.json')}: unsupported architecture "mistral" (model_type); supported: llama, qwen2`);
    expect(() => parseConfig({ ...cfg, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'c.json')).toThrow(
      'c.json: rope_scaling: unsupported rope type "yarn" (supported: default, linear, llama3)',
    );
    expect(() => parseConfig({ ...cfg, hidden_act: 'gelu' }, 'c.json')).toThrow(`c.json: hidden_act "gelu" is not supported (rpv's MLP is SwiGLU with silu)`);
    expect(() => parseConfig({ ...cfg, num_key_value_heads: 3 }, 'c.json')).toThrow(
      'c.json: num_attention_heads 4 must be a multiple of num_key_value_heads 3 (grouped-query attention shares each key/value head among a whole number of query heads)',
    );
  });

  it('names a missing tensor, and the tensor, expected and found shapes on a mismatch', async () => {
    const dir = copyModel();
    const file = path.join(dir, 'model.safetensors');
    const tensors = new Map([...(await readSafetensors(file)).tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data }]));
    const without = new Map(tensors);
    without.delete('model.layers.1.mlp.up_proj.weight');
    await writeSafetensors(file, without);
    await expect(loadModel(dir)).rejects.toThrow(`${dir}: missing tensor model.layers.1.mlp.up_proj.weight (looked in model.safetensors)`);
    const wrong = new Map(tensors);
    wrong.set('model.norm.weight', { shape: [31], data: new Float32Array(31) });
    await writeSafetensors(file, wrong);
    await expect(loadModel(dir)).rejects.toThrow(`${file}: tensor model.norm.weight: expected shape [32], found [31]`);
  });

  it('loads a sharded model.safetensors.index.json, F16 and BF16 shards, to the same logits', async () => {
    const reference = await logitsOf(base);
    const dir = copyModel();
    const { tensors } = await readSafetensors(path.join(dir, 'model.safetensors'));
    rmSync(path.join(dir, 'model.safetensors'));
    const names = [...tensors.keys()];
    const half = Math.floor(names.length / 2);
    const weightMap: Record<string, string> = {};
    const shards = [names.slice(0, half), names.slice(half)];
    for (let s = 0; s < 2; s++) {
      const file = `model-0000${s + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(dir, file), new Map(shards[s].map((n) => [n, { shape: tensors.get(n)!.shape, data: tensors.get(n)!.data }])), { dtype: s === 0 ? 'F16' : 'BF16' });
      for (const n of shards[s]) weightMap[n] = file;
    }
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const sharded = await logitsOf(dir);
    expect(sharded.length).toBe(reference.length);
    let maxDiff = 0;
    for (let i = 0; i < reference.length; i++) maxDiff = Math.max(maxDiff, Math.abs(sharded[i] - reference[i]));
    // Half precision weights: logits agree to ~1e-3 (they are O(0.1) here), not bit for bit.
    expect(maxDiff).toBeLessThan(5e-3);
    expect(maxDiff).toBeGreaterThan(0);
  });
});
