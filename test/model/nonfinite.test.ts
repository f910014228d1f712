// Non-finite weights: a NaN or infinity in a base model, an adapter or a projector is refused
// where it is read (loadModel for score, generate and train; merge-lora; loadAdapter), naming the
// file and the tensor, and never written (saveAdapter, merge-lora's output).
import { beforeAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend, loadModel, mergeLora, saveAdapter, scoreText, writeTinyModel } from '../../src/index.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../../src/util/safetensors.js';
import { firstNonFinite, firstNonFiniteBits } from '../../src/util/finite.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'rpv-nonfinite-'));
let base: string;
let adapter: string;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
  base = path.join(tmp(), 'tiny');
  await writeTinyModel(base, { arch: 'llama', hiddenSize: 32, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 300, seed: 5 });
  const model = await loadModel(base);
  model.addLora({ rank: 2, alpha: 4, dropout: 0, targetModules: ['q', 'v'], useRslora: false, seed: 1 });
  adapter = path.join(tmp(), 'adapter');
  await saveAdapter(model, adapter);
  model.dispose();
});

function copy(dir: string): string {
  const out = path.join(tmp(), path.basename(dir));
  cpSync(dir, out, { recursive: true });
  return out;
}

/** Rewrites `file` with `value` at `index` of tensor `name` (every tensor kept in `dtype`). */
async function poison(file: string, name: string, index: number, value: number, dtype: 'F32' | 'BF16' | 'F16' = 'F32'): Promise<void> {
  const tensors = new Map<string, SafetensorsInput>();
  for (const [n, t] of (await readSafetensors(file)).tensors) tensors.set(n, { shape: t.shape, data: t.data, dtype });
  tensors.get(name)!.data[index] = value;
  await writeSafetensors(file, tensors, { metadata: { format: 'pt' } });
}

describe('non-finite weights', () => {
  it('finds NaN and infinities on the raw bits of F32, F16 and BF16 values', () => {
    expect(firstNonFinite(new Float32Array([0, -1, 3e38]))).toBe(-1);
    expect(firstNonFinite(new Float32Array([0, 1, NaN, Infinity]))).toBe(2);
    const bf16 = new Uint16Array([0x3f80, 0xbf80, 0x7f7f, 0xff80, 0x7fc0]); // 1, -1, max, -inf, NaN
    expect(firstNonFiniteBits(new Uint8Array(bf16.buffer), 'BF16')).toBe(3);
    expect(firstNonFiniteBits(new Uint8Array(bf16.buffer, 0, 6), 'BF16')).toBe(-1);
    expect(firstNonFiniteBits(new Uint8Array(bf16.buffer, 8, 2), 'BF16')).toBe(0); // an odd element alone
    const f16 = new Uint16Array([0x3c00, 0x7bff, 0x3c00, 0x7e00]); // 1, 65504, 1, NaN
    expect(firstNonFiniteBits(new Uint8Array(f16.buffer), 'F16')).toBe(3);
    expect(firstNonFiniteBits(new Uint8Array(new Float32Array([1, -Infinity]).buffer), 'F32')).toBe(1);
    // Across block boundaries and at unaligned starts.
    const long = new Uint16Array(5000).fill(0x3f80);
    long[4321] = 0x7f81;
    expect(firstNonFiniteBits(new Uint8Array(long.buffer), 'BF16')).toBe(4321);
    expect(firstNonFiniteBits(new Uint8Array(long.buffer, 2), 'BF16')).toBe(4320);
    expect(firstNonFiniteBits(new Uint8Array(long.buffer, 2, 2 * 4320), 'BF16')).toBe(-1);
    const words = new Float32Array(3000).fill(2);
    words[2999] = NaN;
    expect(firstNonFiniteBits(new Uint8Array(words.buffer), 'F32')).toBe(2999);
    const shifted = new Uint8Array(4 * 3000 + 1);
    shifted.set(new Uint8Array(words.buffer), 1);
    expect(firstNonFiniteBits(shifted.subarray(1), 'F32')).toBe(2999);
  });

  it('loadModel (rpv score, generate, train) refuses a base weight holding NaN or infinity, naming file and tensor', async () => {
    const dir = copy(base);
    const file = path.join(dir, 'model.safetensors');
    await poison(file, 'model.layers.0.mlp.up_proj.weight', 17, NaN);
    await expect(loadModel(dir)).rejects.toThrow(
      `${file}: tensor model.layers.0.mlp.up_proj.weight: value 17 of 2560 is NaN; non-finite weights are refused (they make every output NaN)`,
    );
    await expect(scoreText({ model: dir, text: 'Hello world', backend: 'wasm' })).rejects.toThrow(`${file}: tensor model.layers.0.mlp.up_proj.weight: value 17 of 2560 is NaN`);
    // BF16 on its stored bits, in the mapped and the tensor placements alike.
    const bf = copy(base);
    const bfFile = path.join(bf, 'model.safetensors');
    await poison(bfFile, 'model.norm.weight', 31, -Infinity, 'BF16');
    for (const weights of ['mapped', 'tensors'] as const) {
      await expect(loadModel(bf, { weights })).rejects.toThrow(
        `${bfFile}: tensor model.norm.weight: value 31 of 32 is -Infinity; non-finite weights are refused (they make every output NaN)`,
      );
    }
  });

  it('rpv score refuses an adapter tensor holding NaN', async () => {
    const bad = copy(adapter);
    const file = path.join(bad, 'adapter_model.safetensors');
    await poison(file, 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', 3, NaN);
    await expect(scoreText({ model: base, adapter: bad, text: 'Hello world', backend: 'wasm' })).rejects.toThrow(
      `${file}: tensor base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight: value 3 of 64 is NaN; non-finite weights are refused (they make every output NaN)`,
    );
  });

  it('rpv merge-lora refuses a non-finite base or adapter tensor and writes nothing', async () => {
    const dir = copy(base);
    const file = path.join(dir, 'model.safetensors');
    await poison(file, 'model.embed_tokens.weight', 5, Infinity);
    const out = path.join(tmp(), 'merged');
    await expect(mergeLora(dir, adapter, out)).rejects.toThrow(
      `${file}: tensor model.embed_tokens.weight: value 5 of 9600 is Infinity; non-finite weights are refused (they make every output NaN)`,
    );
    const bad = copy(adapter);
    const adapterFile = path.join(bad, 'adapter_model.safetensors');
    await poison(adapterFile, 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', 0, NaN);
    await expect(mergeLora(base, bad, out)).rejects.toThrow(
      `${adapterFile}: tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight: value 0 of 64 is NaN; non-finite weights are refused (they make every output NaN)`,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('rpv merge-lora --dtype F16 refuses a merged value beyond float16, which would be written as an infinity', async () => {
    const big = copy(adapter);
    const adapterFile = path.join(big, 'adapter_model.safetensors');
    const tensors = new Map<string, SafetensorsInput>();
    for (const [n, t] of (await readSafetensors(adapterFile)).tensors) tensors.set(n, { shape: t.shape, data: n.endsWith('lora_B.weight') ? t.data.map(() => 1e6) : t.data });
    await writeSafetensors(adapterFile, tensors, { metadata: { format: 'pt' } });
    const out = path.join(tmp(), 'merged');
    await expect(mergeLora(base, big, out, { dtype: 'F16' })).rejects.toThrow(
      new RegExp(`^${path.join(out, 'model.safetensors')}: not written: tensor model\\.layers\\.0\\.self_attn\\.q_proj\\.weight: value 0 of 1024 is -?[0-9.e+]+, beyond float16's 65504 \\(merge with --dtype F32 or BF16\\)$`),
    );
    expect(existsSync(out)).toBe(false);
    await mergeLora(base, big, out, { dtype: 'F32' });
  });

  it('saveAdapter writes no adapter or projector with a non-finite value, naming the tensor', async () => {
    const model = await loadModel(base);
    try {
      model.addLora({ rank: 2, alpha: 4, dropout: 0, targetModules: ['q'], useRslora: false, seed: 1 });
      const pair = model.loraPairs()[0]!;
      const values = new Float32Array(pair.bT.size);
      values[7] = NaN;
      pair.bT.assign(model.tf.tensor2d(values, pair.bT.shape as [number, number]));
      const dir = path.join(tmp(), 'adapter');
      await expect(saveAdapter(model, dir)).rejects.toThrow(
        `${path.join(dir, 'adapter_model.safetensors')}: not written: tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight: value 14 of 64 is NaN (a non-finite value would make every output NaN)`,
      );
      expect(existsSync(path.join(dir, 'adapter_model.safetensors'))).toBe(false);
    } finally {
      model.dispose();
    }
  });
});
