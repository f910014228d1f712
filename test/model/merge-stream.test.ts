// merge-lora streams the base tensor by tensor; its output must be byte for byte what the
// whole-model merge it replaced wrote (test/model/merge-reference.ts) for the same inputs: F32, BF16
// and F16 bases, single and sharded, --dtype conversions, an InternVL folder with a trained mlp1.
// And a refused merge leaves nothing behind, in a new folder or an existing one.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mergeLora, writeTinyModel } from '../../src/index.js';
import { writeTinyInternVL } from '../../src/model/internvl-tiny.js';
import { peftAdapterConfig, PROJECTOR_CONFIG, PROJECTOR_WEIGHTS } from '../../src/model/adapter.js';
import { WeightFolder } from '../../src/model/weights.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../../src/util/safetensors.js';
import { seededRandom } from '../../src/util/random.js';
import { mergeLoraWholeModel } from './merge-reference.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-merge-stream-'));
afterAll(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const tmp = () => path.join(root, `d${n++}`);

const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** A PEFT adapter with random A and B (B not zero, so every merge changes the base) for `targets` of every layer of `modelDir`. */
async function writeRandomAdapter(modelDir: string, dir: string, { targets = MODULES, rank = 4, prefix = '', std = 0.05, seed = 1 } = {}): Promise<void> {
  const folder = await WeightFolder.open(modelDir);
  const rng = seededRandom(seed);
  const tensors = new Map<string, SafetensorsInput>();
  try {
    for (const name of folder.names) {
      const m = name.startsWith(prefix) ? /^model\.layers\.\d+\.(self_attn|mlp)\.(\w+_proj)\.weight$/.exec(name.slice(prefix.length)) : null;
      if (!m || !targets.includes(m[2]!)) continue;
      const [out, inF] = folder.location(name).shape as [number, number];
      const p = `base_model.model.${name.slice(prefix.length).replace(/\.weight$/, '')}`;
      tensors.set(`${p}.lora_A.weight`, { shape: [rank, inF], data: rng.normal(rank * inF, std) });
      tensors.set(`${p}.lora_B.weight`, { shape: [out, rank], data: rng.normal(out * rank, std) });
    }
  } finally {
    await folder.close();
  }
  await fs.mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { metadata: { format: 'pt' } });
  const config = peftAdapterConfig({ rank, alpha: 2 * rank, dropout: 0, targetModules: targets, useRslora: false }, modelDir);
  await fs.writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
}

/** Adds tensors given as stored bytes (any dtype) at the end of a safetensors file. */
async function appendRawTensors(file: string, tensors: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]): Promise<void> {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const data = [bytes.subarray(8 + n)];
  let end = data[0]!.length;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [end, end + t.bytes.length] };
    data.push(Buffer.from(t.bytes));
    end += t.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  await fs.writeFile(file, Buffer.concat([length, json, ...data]));
}

/** Every file of both folders, byte for byte. */
function expectSameFolders(actual: string, expected: string): void {
  const files = readdirSync(expected).sort();
  expect(readdirSync(actual).sort()).toEqual(files);
  for (const f of files) {
    const same = readFileSync(path.join(actual, f)).equals(readFileSync(path.join(expected, f)));
    expect(same, `${f} differs`).toBe(true);
  }
}

/** Both merges of the same inputs: same summary (but the folder), same files. */
async function expectSameMerge(model: string, adapter: string, options: { dtype?: 'F32' | 'F16' | 'BF16' } = {}) {
  const streamed = tmp();
  const reference = tmp();
  const ticks: number[] = [];
  const summary = await mergeLora(model, adapter, streamed, { ...options, progress: (done, total) => ticks.push(done, total) });
  const expected = await mergeLoraWholeModel(model, adapter, reference, options);
  expect({ ...summary, outDir: '' }).toEqual({ ...expected, outDir: '' });
  expectSameFolders(streamed, reference);
  // One tick per tensor, in order.
  expect(ticks.length).toBe(2 * summary.tensors);
  expect(ticks.slice(-2)).toEqual([summary.tensors, summary.tensors]);
  return { summary, streamed };
}

const small = { hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 48, vocabSize: 320, seed: 3 };

describe('merge-lora streamed equals the whole-model merge, byte for byte', () => {
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    it(`${dtype} base, one file, every module adapted`, async () => {
      const model = tmp();
      await writeTinyModel(model, { ...small, dtype });
      const adapter = tmp();
      await writeRandomAdapter(model, adapter);
      const { summary, streamed } = await expectSameMerge(model, adapter);
      expect(summary).toMatchObject({ merged: 14, dtype });
      // The merge changed what it had to: an adapted linear differs from the base, a norm does not.
      const base = (await readSafetensors(path.join(model, 'model.safetensors'))).tensors;
      const out = (await readSafetensors(path.join(streamed, 'model.safetensors'))).tensors;
      expect(out.get('model.layers.1.mlp.down_proj.weight')!.data).not.toEqual(base.get('model.layers.1.mlp.down_proj.weight')!.data);
      expect(out.get('model.layers.1.input_layernorm.weight')!.data).toEqual(base.get('model.layers.1.input_layernorm.weight')!.data);
    });
  }

  it('sharded BF16 base (llama, untied head), q and v adapted: one model.safetensors, as before', async () => {
    const model = tmp();
    await writeTinyModel(model, { ...small, arch: 'llama', dtype: 'BF16', maxShardBytes: 8_000 });
    expect(existsSync(path.join(model, 'model.safetensors.index.json'))).toBe(true);
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { targets: ['q_proj', 'v_proj'], rank: 2 });
    const { summary, streamed } = await expectSameMerge(model, adapter);
    expect(summary).toMatchObject({ merged: 4, dtype: 'BF16' });
    expect(readdirSync(streamed).filter((f) => f.includes('safetensors'))).toEqual(['model.safetensors']);
  });

  it('sharded F16 base, --dtype F32, BF16 and F16', async () => {
    const model = tmp();
    await writeTinyModel(model, { ...small, dtype: 'F16', maxShardBytes: 6_000 });
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { targets: ['o_proj', 'up_proj'] });
    for (const dtype of ['F32', 'BF16', 'F16'] as const) expect((await expectSameMerge(model, adapter, { dtype })).summary.dtype).toBe(dtype);
  });

  it('BF16 base written as F32 and F16', async () => {
    const model = tmp();
    await writeTinyModel(model, { ...small, dtype: 'BF16' });
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { targets: ['q_proj'] });
    for (const dtype of ['F32', 'F16'] as const) await expectSameMerge(model, adapter, { dtype });
  });

  it('F32 base written as BF16 and F16', async () => {
    const model = tmp();
    await writeTinyModel(model, { ...small, dtype: 'F32' });
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { targets: ['k_proj', 'gate_proj'] });
    for (const dtype of ['BF16', 'F16'] as const) await expectSameMerge(model, adapter, { dtype });
  });

  it('buffers stored as F64, I64 and I32 (rotary inv_freq) are written as the whole-model merge wrote them', async () => {
    const model = tmp();
    await writeTinyModel(model, { ...small, dtype: 'BF16' });
    const inv = Array.from({ length: 4 }, (_, i) => 1 / 10000 ** (i / 4));
    await appendRawTensors(path.join(model, 'model.safetensors'), [
      { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F64', shape: [4], bytes: new Uint8Array(Float64Array.from(inv).buffer) },
      { name: 'model.layers.1.self_attn.rotary_emb.inv_freq', dtype: 'I64', shape: [3], bytes: new Uint8Array(BigInt64Array.from([1n, -2n, 700n]).buffer) },
      { name: 'model.rotary_emb.inv_freq', dtype: 'I32', shape: [2], bytes: new Uint8Array(Int32Array.from([5, -6]).buffer) },
    ]);
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { targets: ['up_proj'] });
    for (const dtype of [undefined, 'F32', 'F16'] as const) await expectSameMerge(model, adapter, { dtype });
  });

  it('InternVL folder: tower unchanged, mlp1 as trained, LoRA into language_model, .py copied', async () => {
    const model = tmp();
    await writeTinyInternVL(model, { preset: 'internvl-tiny', seed: 5 });
    await fs.writeFile(path.join(model, 'modeling_internvl_chat.py'), '# remote code\n');
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { prefix: 'language_model.', targets: ['q_proj', 'down_proj'] });
    const frozen = await expectSameMerge(model, adapter);
    expect(frozen.summary).toMatchObject({ merged: 4, mlp1: 'base' });
    // A trained mlp1: the base's, changed.
    const base = (await readSafetensors(path.join(model, 'model.safetensors'))).tensors;
    const mlp1 = new Map<string, SafetensorsInput>();
    for (const [name, t] of base) if (name.startsWith('mlp1.')) mlp1.set(name, { shape: t.shape, data: (t.data as Float32Array).map((v, i) => v + 0.01 * (i % 7)) });
    await writeSafetensors(path.join(adapter, PROJECTOR_WEIGHTS), mlp1, { metadata: { format: 'pt' } });
    await fs.writeFile(path.join(adapter, PROJECTOR_CONFIG), JSON.stringify({ projector_type: 'internvl_mlp1' }));
    const { summary, streamed } = await expectSameMerge(model, adapter);
    expect(summary).toMatchObject({ merged: 4, mlp1: 'trained' });
    expect(readdirSync(streamed)).toContain('modeling_internvl_chat.py');
    const out = (await readSafetensors(path.join(streamed, 'model.safetensors'))).tensors;
    expect(out.get('mlp1.1.weight')!.data).toEqual(mlp1.get('mlp1.1.weight')!.data);
    const tower = [...base.keys()].filter((k) => k.startsWith('vision_model.'));
    expect(tower.length).toBeGreaterThan(0);
    for (const k of tower) expect(out.get(k)!.data).toEqual(base.get(k)!.data);
  });
});

describe('merge-lora refused while streaming leaves nothing behind', () => {
  it('into an existing folder: no weights file, no temporary, the folder as it was', async () => {
    const model = tmp();
    await writeTinyModel(model, { ...small, dtype: 'F32' });
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { targets: ['v_proj'], std: 1e3 });
    const out = tmp();
    await fs.mkdir(out);
    await fs.writeFile(path.join(out, 'notes.txt'), 'mine\n');
    await expect(mergeLora(model, adapter, out, { dtype: 'F16' })).rejects.toThrow(
      new RegExp(`^${path.join(out, 'model.safetensors')}: not written: tensor model\\.layers\\.0\\.self_attn\\.v_proj\\.weight: value \\d+ of 512 is -?[0-9.e+]+, beyond float16's 65504 \\(merge with --dtype F32 or BF16\\)$`),
    );
    expect(readdirSync(out)).toEqual(['notes.txt']);
  });
});

describe('rpv merge-lora stopped by a signal', () => {
  it('SIGINT while the weights stream: exit 130, the unfinished file and the folder it created removed', async () => {
    // Big enough that the merge (rank 64 on every linear) runs for seconds once writing has begun.
    const model = tmp();
    await writeTinyModel(model, { hiddenSize: 384, intermediateSize: 1536, numLayers: 6, numHeads: 6, numKvHeads: 2, vocabSize: 320, seed: 4 });
    const adapter = tmp();
    await writeRandomAdapter(model, adapter, { rank: 64 });
    const out = tmp();
    const cli = path.resolve(import.meta.dirname, '../../src/cli.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'merge-lora', '--model', model, '--adapter', adapter, '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    let exited = false;
    void code.then(() => (exited = true));
    const writing = () => existsSync(out) && readdirSync(out).some((f) => f.endsWith('.tmp'));
    for (let i = 0; i < 3000 && !exited && !writing(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(writing(), `the merge never began writing: ${err}`).toBe(true);
    child.kill('SIGINT');
    expect(await code).toBe(130);
    expect(err).toContain(`merge-lora: stopped by SIGINT: the unfinished model.safetensors is removed (and ${out}, if this merge created it)`);
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});

