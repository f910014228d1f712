// Training from an InternVL chat folder (make-tiny-model's internvl-tiny): shards converted with the
// folder's own tower, the prompt in InternVL's frame layout, mlp1 initialised from the pretrained
// weights (and kept under train.projector=freeze), exact resume, refusals of another encoder and of
// a projector that is not mlp1, and merge-lora writing an InternVL folder whose logits are the run's.
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertExport, dryRun, generateReply, loadForGeneration, mergeLora, parseRecipe, train, writeSampleExport } from '../../src/index.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { readShard } from '../../src/shard/read.js';
import { renderGenerationPrompt } from '../../src/train/prompt.js';
import { promptTokenizer } from '../../src/train/bridge.js';
import { parseClipRender } from '../../src/demo/sample-export.js';
import { writeTinyInternVL } from '../../src/model/internvl-tiny.js';
import { loadModel } from '../../src/model/load.js';
import { loadInternVLProjector, loadAdapter, loadProjector } from '../../src/model/adapter.js';
import { readSafetensors } from '../../src/util/safetensors.js';
import { writeTinyTower } from '../../src/vision/index.js';
import { Mulberry32 } from '../../src/util/random.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-internvl-train-'));
const ivl = path.join(root, 'ivl');
const shards = path.join(root, 'shards');
const quiet = { progressStream: null, log: () => {} };

const recipeFor = (out: string, overrides: string[] = []) =>
  parseRecipe(
    `output_dir: ${path.join(root, out)}
seed: 7
model: {path: ${ivl}, backend: wasm}
data: {shards: ${shards}, heldout_fraction: 0, batch_size: 2, workers: 0}
prompt: {max_tokens: 512, profile_max_tokens: 24}
lora: {r: 4, alpha: 8, dropout: 0.1, target_modules: [q, v]}
projector: {type: internvl_mlp1}
optimizer: {lr: 0.01}
train: {max_steps: 4}
eval: {every_steps: 0}
checkpoint: {every_steps: 2, keep_last: 3}
`,
    overrides,
    'internvl.yaml',
  );

beforeAll(async () => {
  await writeTinyInternVL(ivl, { preset: 'internvl-tiny', seed: 5, initStd: 0.2 });
  const exportDir = path.join(root, 'export');
  await writeSampleExport(exportDir, { clips: 3, dialoguesPerClip: 2, render: parseClipRender('64x48', 10) });
  await convertExport({ input: exportDir, out: shards, encoder: `hf:${ivl}`, dtype: 'float32', maxFrames: 2, minFrames: 2 });
}, 120_000);

describe('training from an InternVL folder', () => {
  it('dry-run shows the sample in InternVL\'s frame layout with its loss mask', async () => {
    const text = await dryRun(recipeFor('dry'));
    expect(text).toContain('Frame1: <img>[video x4]</img>\nFrame2: <img>[video x4]</img>\n<|im_end|>');
    expect(text).toMatch(/<\|im_start\|>assistant\n\[\[[^\]]+<\|im_end\|>\]\]/);
    expect(text).toContain('projector: 12,672 values in 6 tensors');
  }, 60_000);

  it('starts mlp1 from the folder\'s weights and keeps them with train.projector=freeze', async () => {
    const result = await train(recipeFor('frozen', ['train.projector=freeze', 'train.max_steps=2']), quiet);
    expect(result.losses.every(Number.isFinite)).toBe(true);
    const base = (await readSafetensors(path.join(ivl, 'model.safetensors'))).tensors;
    const saved = (await readSafetensors(path.join(root, 'frozen', 'adapter', 'projector.safetensors'))).tensors;
    expect([...saved.keys()].sort()).toEqual(['mlp1.0.bias', 'mlp1.0.weight', 'mlp1.1.bias', 'mlp1.1.weight', 'mlp1.3.bias', 'mlp1.3.weight']);
    for (const [name, t] of saved) expect(Array.from(t.data), name).toEqual(Array.from(base.get(name)!.data));
  }, 60_000);

  it('resumes with exactly the losses of the uninterrupted run (mlp1 trained)', async () => {
    const straight = await train(recipeFor('straight'), quiet);
    expect(straight.losses).toHaveLength(4);
    expect(straight.losses.every(Number.isFinite)).toBe(true);
    let steps = 0;
    const first = await train(recipeFor('resumed'), { ...quiet, shouldStop: () => ++steps >= 2 });
    expect(first.steps).toBe(2);
    const second = await train(recipeFor('resumed', [`resume=${path.join(root, 'resumed')}`]), quiet);
    expect([...first.losses, ...second.losses]).toEqual(straight.losses);
    const trained = (await readSafetensors(path.join(root, 'straight', 'checkpoints', 'step-000004', 'trainable.safetensors'))).tensors;
    expect(trained.has('mlp1.0.weight')).toBe(true);
    // Another InternVL folder as the base: its tower is another encoder than the shards' (the id
    // hashes the whole folder), which is named before the base model's identity is compared.
    const otherBase = path.join(root, 'ivl-other');
    await writeTinyInternVL(otherBase, { preset: 'internvl-tiny', seed: 6, initStd: 0.2 });
    const err = await train(recipeFor('resumed', [`resume=${path.join(root, 'resumed')}`, 'train.max_steps=6', `model.path=${otherBase}`]), quiet).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^train: ${shards} holds features of encoder hf:internvit/\\S+, but ${otherBase}'s mlp1 was trained on its own tower, encoder hf:internvit/\\S+: convert the videos with --encoder hf:${otherBase}$`));
  }, 120_000);

  it('generates from the run with a video: mlp1 as trained, frames in InternVL\'s layout at <IMG_CONTEXT>', async () => {
    const run = await loadForGeneration(path.join(root, 'straight'));
    try {
      expect(run.model.projector?.config.type).toBe('internvl_mlp1');
      expect(run.model.videoTokenId).toBe(run.model.tokenizer!.tokenToId('<IMG_CONTEXT>'));
      const index = await readShardIndex(shards);
      const [row] = await readShard(path.join(shards, index.shards.find((e) => e.format === 'arrow')!.file));
      const video = { features: row!.frames, frameTimes: row!.frame_times, tokensPerFrame: 4, featureDim: 128 };
      const history = [{ role: 'user' as const, content: 'Hi' }];
      const withVideo = await generateReply({ model: run.model, role: row!.role, profile: null, video, history, maxNewTokens: 3 });
      // The prompt generateReply renders (the same function and tokenizer wrapper), decoded.
      const tok = run.model.tokenizer!;
      const prompt = renderGenerationPrompt(promptTokenizer(tok), { role: row!.role, profile: null, frameTimes: row!.frame_times, history }, { frameTimeText: true, tokensPerFrame: 4 });
      expect(withVideo.promptTokens).toBe(prompt.inputIds.length);
      const text = tok.decode(Array.from(prompt.inputIds, (id) => (id < 0 ? run.model.videoTokenId! : id)));
      const frame = (i: number) => `Frame${i}: <img>${'<IMG_CONTEXT>'.repeat(4)}</img>\n`;
      expect(text).toContain(`The video you are in:\n${frame(1)}${frame(2)}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`);
      expect(withVideo.tokenIds.length).toBeGreaterThan(0);
    } finally {
      run.model.dispose();
    }
  }, 60_000);

  it('refuses a projector other than mlp1, and shards of another encoder, naming both encoders', async () => {
    await expect(train(recipeFor('wrong-type', ['projector.type=mlp2x_gelu']), quiet)).rejects.toThrow(
      `train: projector.type: ${ivl} is an InternVL folder, whose projector is its pretrained mlp1: set projector.type=internvl_mlp1 (found mlp2x_gelu)`,
    );
    // The same tower shape (128 values per token) with other weights: another encoder.
    const other = path.join(root, 'other-tower');
    await writeTinyTower(other, { family: 'internvit', preset: 'tiny', seed: 9 });
    const otherShards = path.join(root, 'other-shards');
    await convertExport({ input: path.join(root, 'export'), out: otherShards, encoder: `hf:${other}`, dtype: 'float32', maxFrames: 2, minFrames: 2 });
    const err = await train(recipeFor('wrong-encoder', [`data.shards=${otherShards}`]), quiet).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(
      new RegExp(`^train: ${otherShards} holds features of encoder hf:internvit/intern_vit_6b#layer=-1,tokens=patches,pool=1,shuffle=0\\.5@[0-9a-f]{16}, but ${ivl}'s mlp1 was trained on its own tower, encoder hf:internvit/intern_vit_6b#layer=-1,tokens=patches,pool=1,shuffle=0\\.5@[0-9a-f]{16}: convert the videos with --encoder hf:${ivl}$`),
    );
  }, 120_000);

  it('merge-lora writes an InternVL folder: tower unchanged, mlp1 as trained, LoRA merged; its logits are the run\'s', async () => {
    const adapter = path.join(root, 'straight', 'adapter');
    const merged = path.join(root, 'merged');
    await fs.writeFile(path.join(ivl, 'modeling_internvl_chat.py'), '# remote code stand-in\n');
    const summary = await mergeLora(ivl, adapter, merged);
    expect(summary).toMatchObject({ merged: 4, mlp1: 'trained' });
    expect((await fs.readdir(merged)).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'modeling_internvl_chat.py', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']);
    const base = (await readSafetensors(path.join(ivl, 'model.safetensors'))).tensors;
    const out = (await readSafetensors(path.join(merged, 'model.safetensors'))).tensors;
    const mlp1 = (await readSafetensors(path.join(adapter, 'projector.safetensors'))).tensors;
    expect([...out.keys()].sort()).toEqual([...base.keys()].sort());
    for (const [name, t] of out) {
      if (name.startsWith('vision_model.')) expect(Array.from(t.data), name).toEqual(Array.from(base.get(name)!.data));
      if (name.startsWith('mlp1.')) expect(Array.from(t.data), name).toEqual(Array.from(mlp1.get(name)!.data));
    }
    expect(Array.from(out.get('language_model.model.layers.0.self_attn.q_proj.weight')!.data)).not.toEqual(Array.from(base.get('language_model.model.layers.0.self_attn.q_proj.weight')!.data));
    expect(Array.from(out.get('language_model.model.layers.0.self_attn.k_proj.weight')!.data)).toEqual(Array.from(base.get('language_model.model.layers.0.self_attn.k_proj.weight')!.data));

    // Logits: base + the run's adapter and mlp1, against the merged folder with its own mlp1.
    const tokensOf = (tok: NonNullable<Awaited<ReturnType<typeof loadModel>>['tokenizer']>, ctx: number) => [
      ...tok.encode('<|im_start|>user\nFrame1: <img>'), ...Array(4).fill(ctx), ...tok.encode('</img>\nHi<|im_end|>\n<|im_start|>assistant\n'),
    ];
    const features = new Mulberry32(3).normal(4 * 128, 1);
    const logitsOf = async (model: Awaited<ReturnType<typeof loadModel>>) => {
      const ids = tokensOf(model.tokenizer!, model.videoTokenId!);
      const t = model.logits({ inputIds: ids, batch: 1, video: { features: { data: features, shape: [1, 4, 128] } } });
      const v = await t.data();
      t.dispose();
      return v;
    };
    const run = await loadModel(ivl, { log: null });
    await loadAdapter(run, adapter);
    await loadProjector(run, adapter);
    const want = await logitsOf(run);
    run.dispose();
    const folder = await loadModel(merged, { log: null });
    await loadInternVLProjector(folder);
    const got = await logitsOf(folder);
    folder.dispose();
    let scale = 0;
    let err = 0;
    for (let i = 0; i < want.length; i++) {
      scale = Math.max(scale, Math.abs(want[i]!));
      err = Math.max(err, Math.abs(got[i]! - want[i]!));
    }
    expect(err / scale).toBeLessThan(1e-4);
  }, 120_000);
});
