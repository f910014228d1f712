import { beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { ChatTokenizer, initBackend, loadAdapter, loadModel, loadProjector, mergeLora, saveAdapter, scoreText, writeTinyModel, type CausalLM } from '../../src/index.js';
import { KvCache } from '../../src/model/decoder.js';
import { readSafetensors } from '../../src/util/safetensors.js';
import { seededRandom } from '../../src/util/random.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'rpv-model-'));
let dir: string;
let model: CausalLM;
let tf: typeof tfc;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
  dir = path.join(tmp(), 'tiny');
  await writeTinyModel(dir, { arch: 'qwen2', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 320, initStd: 0.2, seed: 11 });
  model = await loadModel(dir);
  tf = model.tf;
});

async function values(t: tfc.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('tiny model folder', () => {
  it('is deterministic from its seed and scores the same text the same way twice', async () => {
    const again = path.join(tmp(), 'tiny');
    await writeTinyModel(again, { arch: 'qwen2', hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 320, initStd: 0.2, seed: 11 });
    for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'config.json']) {
      expect(readFileSync(path.join(again, f)).equals(readFileSync(path.join(dir, f))), f).toBe(true);
    }
    const a = await scoreText({ model: dir, text: 'The cook lifts the noodles. 厨师捞起面条。', backend: 'wasm' });
    const b = await scoreText({ model: again, text: 'The cook lifts the noodles. 厨师捞起面条。', backend: 'wasm' });
    expect(b).toEqual(a);
    expect(a.logprobs[0]).toBeNull();
    expect(a.logprobs.length).toBe(a.ids.length);
    expect(a.total).toBeCloseTo(a.logprobs.slice(1).reduce((s: number, v) => s + (v as number), 0), 4);
    expect(model.tokenizer!.decode(a.ids)).toBe('The cook lifts the noodles. 厨师捞起面条。');
  });

  it('gives each chat message an exact token span (trained reply = content + end of turn)', () => {
    const tok = model.tokenizer!;
    const enc = tok.encodeChat(
      [
        { role: 'system', content: 'You are Li Wei.' },
        { role: 'user', content: '很辣吗？' },
        { role: 'assistant', content: 'Only a little!' },
      ],
      { addGenerationPrompt: false },
    );
    expect(enc.ids).toEqual(tok.encode(enc.text));
    const reply = enc.spans[2];
    expect(tok.decode(enc.ids.slice(reply.start, reply.contentStart))).toBe('<|im_start|>assistant\n');
    expect(tok.decode(enc.ids.slice(reply.contentStart, reply.end))).toBe('Only a little!<|im_end|>\n');
    expect(tok.decode(enc.ids.slice(enc.spans[1].start, enc.spans[1].end))).toBe('<|im_start|>user\n很辣吗？<|im_end|>\n');
    const gen = tok.encodeChat([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
    expect(tok.decode(gen.ids.slice(gen.generationPrompt!.start))).toBe('<|im_start|>assistant\n');
  });

  it('prefers chat_template.jinja over tokenizer_config.json', async () => {
    const copy = path.join(tmp(), 'jinja');
    cpSync(dir, copy, { recursive: true });
    writeFileSync(path.join(copy, 'chat_template.jinja'), "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}");
    const tok = await ChatTokenizer.load(copy);
    expect(tok.applyChatTemplate([{ role: 'user', content: '你好' }])).toBe('[user] 你好\n');
  });
});

describe('decoder', () => {
  it('KV-cache generation gives the logits of the full forward, with left padding in the batch', async () => {
    const tok = model.tokenizer!;
    const long = tok.encode('She smiles at the camera and points');
    const short = tok.encode('Come in, sit');
    const T = long.length;
    const pad = T - short.length;
    const ids = [...long, ...new Array(pad).fill(0), ...short];
    const mask = [...new Array(T).fill(1), ...new Array(pad).fill(0), ...new Array(short.length).fill(1)];
    const full = await values(model.logits({ inputIds: ids, batch: 2, attentionMask: mask }));
    // The left-padded row matches the same text alone.
    const alone = await values(model.logits({ inputIds: short, batch: 1 }));
    const V = model.config.vocabSize;
    expect(maxAbsDiff(full.subarray((T + pad) * V, 2 * T * V), alone)).toBeLessThan(1e-4);
    // Prefill 4 positions, then one token at a time.
    const cache = new KvCache();
    const prefill = 4;
    const rows = (from: number, to: number) => [...ids.slice(from, to), ...ids.slice(T + from, T + to)];
    const maskUpTo = (to: number) => [...mask.slice(0, to), ...mask.slice(T, T + to)];
    let step = await values(model.logits({ inputIds: rows(0, prefill), batch: 2, attentionMask: maskUpTo(prefill) }, { cache, lastOnly: true } as never));
    const check = (pos: number, got: Float32Array) => {
      for (let b = 0; b < 2; b++) {
        // Row 1's padded positions have no meaningful logits; compare real positions only.
        if (b === 1 && pos < pad) continue;
        const ref = full.subarray((b * T + pos) * V, (b * T + pos + 1) * V);
        expect(maxAbsDiff(got.subarray(b * V, (b + 1) * V), ref), `row ${b} position ${pos}`).toBeLessThan(1e-4);
      }
    };
    check(prefill - 1, step);
    for (let pos = prefill; pos < T; pos++) {
      step = await values(model.logits({ inputIds: rows(pos, pos + 1), batch: 2, attentionMask: maskUpTo(pos + 1) }, { cache, lastOnly: true }));
      check(pos, step);
    }
    expect(cache.length).toBe(T);
    cache.dispose();
  });

  it('keeps tf.memory().numTensors flat across training steps (forward, loss, gradients, update)', async () => {
    model.addLora({ rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q', 'v', 'o', 'up', 'down'], seed: 1 });
    model.addProjector({ featureDim: 8, seed: 1 });
    const tok = model.tokenizer!;
    const enc = tok.encodeChat([
      { role: 'user', content: 'What is in the video? <|video_pad|><|video_pad|><|video_pad|><|video_pad|>' },
      { role: 'assistant', content: 'A night market.' },
    ]);
    const labels = enc.ids.map((id, i) => (i >= enc.spans[1].contentStart ? id : -100));
    const features = { data: seededRandom(3).normal(2 * 4 * 8, 1), shape: [2, 4, 8] as [number, number, number] };
    const input = { inputIds: [...enc.ids, ...enc.ids], batch: 2, video: { features } };
    const vars = model.trainableVariables();
    const losses: number[] = [];
    const step = async (i: number) => {
      const { value, grads } = tf.variableGrads(() => {
        const r = model.computeLoss(input, [...labels, ...labels], { training: true, seed: i });
        return tf.div(r.sum, r.count) as tfc.Scalar;
      }, vars);
      tf.tidy(() => {
        for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name], 0.05)));
      });
      tf.dispose(grads);
      losses.push((await value.data())[0]);
      value.dispose();
    };
    await step(0);
    const before = tf.memory().numTensors;
    for (let i = 1; i < 4; i++) await step(i);
    expect(tf.memory().numTensors).toBe(before);
    expect(losses[3]).toBeLessThan(losses[0]);
  });

  it('uses only as many video feature rows as there are placeholders (padding frames are ignored)', async () => {
    model.addProjector({ featureDim: 4, seed: 2 });
    const ids = model.tokenizer!.encode('See <|video_pad|><|video_pad|> here');
    const labels = ids.slice();
    const f = seededRandom(1).normal(2 * 4, 1);
    const padded = new Float32Array(3 * 4);
    padded.set(f);
    padded.fill(9, 8);
    const loss = async (data: Float32Array, rows: number) => {
      const r = tf.tidy(() => model.computeLoss({ inputIds: ids, batch: 1, video: { features: { data, shape: [1, rows, 4] } } }, labels).sum);
      return (await values(r))[0];
    };
    expect(await loss(padded, 3)).toBeCloseTo(await loss(f, 2), 5);
    const shuffled = new Float32Array([...f.subarray(4), ...f.subarray(0, 4)]);
    expect(await loss(shuffled, 2)).not.toBeCloseTo(await loss(f, 2), 3);
    expect(() => model.computeLoss({ inputIds: ids, batch: 1, video: { features: { data: f.subarray(0, 4), shape: [1, 1, 4] } } }, labels)).toThrow(
      'forward: sample 0 has more video placeholder tokens than its 1 video feature rows',
    );
  });
});

describe('adapters', () => {
  it('saves PEFT key names, shapes, metadata and config; loads back; merge-lora folds it into the base', async () => {
    model.addLora({ rank: 4, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'k', 'gate'], useRslora: false, seed: 7 });
    const rng = seededRandom(8);
    for (const p of model.loraPairs()) tf.tidy(() => p.bT.assign(tf.tensor(rng.normal(p.bT.size, 0.2), p.bT.shape)));
    model.addProjector({ featureDim: 8, seed: 3 });
    const out = path.join(tmp(), 'adapter');
    await saveAdapter(model, out);
    const { tensors, metadata } = await readSafetensors(path.join(out, 'adapter_model.safetensors'));
    expect(metadata).toEqual({ format: 'pt' });
    const expected: [string, number[]][] = [];
    for (let i = 0; i < 2; i++) {
      const a = `base_model.model.model.layers.${i}.self_attn`;
      const m = `base_model.model.model.layers.${i}.mlp`;
      expected.push([`${a}.q_proj.lora_A.weight`, [4, 32]], [`${a}.q_proj.lora_B.weight`, [32, 4]]);
      expected.push([`${a}.k_proj.lora_A.weight`, [4, 32]], [`${a}.k_proj.lora_B.weight`, [16, 4]]);
      expected.push([`${m}.gate_proj.lora_A.weight`, [4, 32]], [`${m}.gate_proj.lora_B.weight`, [model.config.intermediateSize, 4]]);
    }
    expect([...tensors.keys()].sort()).toEqual(expected.map(([n]) => n).sort());
    for (const [name, shape] of expected) expect(tensors.get(name)!.shape, name).toEqual(shape);
    const config = JSON.parse(readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 16, lora_dropout: 0.05, bias: 'none', use_rslora: false, target_modules: ['q_proj', 'k_proj', 'gate_proj'] });
    expect(config.base_model_name_or_path).toBe(path.resolve(dir));
    const projector = await readSafetensors(path.join(out, 'projector.safetensors'));
    expect(projector.tensors.get('projector.0.weight')!.shape).toEqual([32, 8]);
    expect(projector.tensors.get('projector.2.weight')!.shape).toEqual([32, 32]);

    const ids = model.tokenizer!.encode('The teacher reads a letter by the window.');
    const withAdapter = await values(model.logits({ inputIds: ids, batch: 1 }));
    const other = await loadModel(dir);
    const base = await values(other.logits({ inputIds: ids, batch: 1 }));
    expect(maxAbsDiff(base, withAdapter)).toBeGreaterThan(1e-2);
    await loadAdapter(other, out);
    await loadProjector(other, out);
    expect(maxAbsDiff(await values(other.logits({ inputIds: ids, batch: 1 })), withAdapter)).toBeLessThan(1e-5);
    expect(maxAbsDiff(await values(other.projector!.w1T.clone()), await values(model.projector!.w1T.clone()))).toBe(0);
    other.dispose();

    const mergedDir = path.join(tmp(), 'merged');
    const summary = await mergeLora(dir, out, mergedDir);
    expect(summary.merged).toBe(6);
    const merged = await loadModel(mergedDir);
    expect(maxAbsDiff(await values(merged.logits({ inputIds: ids, batch: 1 })), withAdapter)).toBeLessThan(1e-4);
    expect(readFileSync(path.join(mergedDir, 'tokenizer.json')).equals(readFileSync(path.join(dir, 'tokenizer.json')))).toBe(true);
    merged.dispose();
  });
});
