import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend.js';
import { loadModel } from '../../src/model/load.js';
import { MODEL_PRESETS, writeTinyModel } from '../../src/model/tiny.js';
import { activationBytes, describePlan, gib, hostMemoryLimit, nativeScratchBytes, planMemory, type MemoryPlanInput } from '../../src/train/memory.js';
import { loadRecipe, parseRecipe } from '../../src/train/recipe.js';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-memory-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const headDim = (p: { hiddenSize: number; numHeads: number }) => p.hiddenSize / p.numHeads;
const preset = (name: keyof typeof MODEL_PRESETS) => {
  const p = MODEL_PRESETS[name];
  return { hiddenSize: p.hiddenSize, intermediateSize: p.intermediateSize, numLayers: p.numLayers, numKvHeads: p.numKvHeads, headDim: headDim(p) };
};
const GiB = 2 ** 30;
const host24 = { bytes: 24 * GiB, source: 'the machine\'s memory' };
const base = (over: Partial<MemoryPlanInput>): MemoryPlanInput => ({
  config: preset('qwen2.5-0.5b'),
  trainableValues: 9_717_504,
  weightHeapBytes: 0,
  mappedBytes: 988_000_000,
  maxTokens: 2048,
  batchSize: 1,
  gradientCheckpointing: 'auto',
  prefetchBytes: 512 * 2 ** 20,
  backend: 'wasm',
  hostLimit: host24,
  ...over,
});

describe('memory plan', () => {
  it('turns checkpointing on for a 0.5B model at 2048 tokens, not for a small one at 256', () => {
    const big = planMemory(base({}));
    expect(big.checkpointing).toBe(true);
    expect(big.checkpointingReason).toMatch(/^auto: activations of every layer \(\d+\.\d\d GiB\) would take more than half of the wasm backend's heap/);
    expect(big.refusal).toBeNull();
    const small = planMemory(base({ maxTokens: 256, config: { hiddenSize: 256, intermediateSize: 640, numLayers: 4, numKvHeads: 2, headDim: 64 } }));
    expect(small.checkpointing).toBe(false);
    // An explicit setting is kept.
    expect(planMemory(base({ gradientCheckpointing: false, maxTokens: 256 })).checkpointing).toBe(false);
  });

  it('refuses a 7B model held as float32 tensors in the wasm heap, naming sizes and remedies', () => {
    const plan = planMemory(
      base({ config: preset('qwen2.5-7b'), weightHeapBytes: 4 * 7_615_616_512, mappedBytes: 0, trainableValues: 40_370_176, maxTokens: 512, gradientCheckpointing: true }),
    );
    expect(plan.refusal).toBe(
      'train: the run needs about 30.90 GiB of tensors (frozen weights as tensors 28.37 GiB, trainable state 0.75 GiB (40,370,176 values x 20 bytes), ' +
        "activations 1.72 GiB at prompt.max_tokens=512 x data.batch_size=1 with gradient checkpointing) but the wasm backend's heap holds 4.00 GiB: " +
        "lower prompt.max_tokens or data.batch_size (raise train.grad_accum_steps to keep the batch); or load the weights mapped (BF16/F16/F32 safetensors with rpv's native addon)",
    );
  });

  it('refuses a run whose mapped weights and tensors exceed the host memory', () => {
    const plan = planMemory(
      base({ config: preset('qwen2.5-7b'), mappedBytes: 15_231_233_024, trainableValues: 40_370_176, maxTokens: 512, hostLimit: { bytes: 16 * GiB, source: 'the cgroup limit (memory.max)' } }),
    );
    expect(plan.checkpointing).toBe(true);
    expect(plan.refusal).toBe(
      'train: the run needs about 17.61 GiB of memory (trainable state 0.75 GiB (40,370,176 values x 20 bytes), activations 1.72 GiB at prompt.max_tokens=512 x data.batch_size=1 with gradient checkpointing; ' +
        'mapped weights 14.19 GiB, loader prefetch 0.50 GiB) but the cgroup limit (memory.max) is 16.00 GiB: ' +
        'lower prompt.max_tokens or data.batch_size (raise train.grad_accum_steps to keep the batch); or lower data.prefetch_bytes',
    );
    // The same run fits in 24 GiB.
    expect(planMemory(base({ config: preset('qwen2.5-7b'), mappedBytes: 15_231_233_024, trainableValues: 40_370_176, maxTokens: 512 })).refusal).toBeNull();
  });

  it('counts the native kernels\' scratch in host memory, bounded whatever the threads', () => {
    const p = MODEL_PRESETS['qwen2.5-7b'];
    const config = { hiddenSize: p.hiddenSize, vocabSize: p.vocabSize, numHeads: p.numHeads, headDim: headDim(p) };
    const scratch = (threads: number) => nativeScratchBytes({ config, threads, maxTokens: 512, batchSize: 1 });
    // Each thread adds its GEMM packing buffers and attention rows (1.4 MiB); the cross-entropy's
    // logits chunk and partial sums do not grow with the threads.
    expect((scratch(16) - scratch(2)) / 14).toBeLessThan(1.5 * 2 ** 20);
    expect(scratch(16)).toBeLessThan(128 * 2 ** 20);
    const run = { config: preset('qwen2.5-7b'), mappedBytes: 15_231_233_024, trainableValues: 40_370_176, maxTokens: 512, hostLimit: { bytes: 16 * GiB, source: 'the cgroup limit (memory.max)' } };
    const without = planMemory(base(run));
    const plan = planMemory(base({ ...run, scratchBytes: scratch(16) }));
    expect(without.scratchBytes).toBe(0);
    expect(plan.scratchBytes).toBe(scratch(16));
    expect(plan.hostBytes - without.hostBytes).toBe(scratch(16));
    expect(plan.tensorBytes).toBe(without.tensorBytes);
    expect(describePlan(plan)).toContain(`native kernel scratch (outside the tensors): about ${gib(scratch(16))}`);
    expect(describePlan(without).join('\n')).not.toContain('native kernel scratch');
    expect(plan.refusal).toBe(
      'train: the run needs about 17.72 GiB of memory (trainable state 0.75 GiB (40,370,176 values x 20 bytes), activations 1.72 GiB at prompt.max_tokens=512 x data.batch_size=1 with gradient checkpointing; ' +
        'mapped weights 14.19 GiB, native kernel scratch 0.12 GiB, loader prefetch 0.50 GiB) but the cgroup limit (memory.max) is 16.00 GiB: ' +
        'lower prompt.max_tokens or data.batch_size (raise train.grad_accum_steps to keep the batch); or lower data.prefetch_bytes',
    );
  });

  it('fits the shipped real-size recipe for Qwen2.5-0.5B and 1.5B on the wasm heap, with checkpointing', async () => {
    const recipe = await loadRecipe(path.join(repoRoot, 'recipes', 'qwen2.5-0.5b-video60k.yaml'));
    // LoRA r on the seven modules of every layer (A: r x in, B: out x r) + a projector from 34-dim features.
    const trainable = (name: keyof typeof MODEL_PRESETS) => {
      const p = MODEL_PRESETS[name];
      const kv = p.numKvHeads * headDim(p);
      const perLayer = [p.hiddenSize + p.hiddenSize, p.hiddenSize + kv, p.hiddenSize + kv, p.hiddenSize + p.hiddenSize, p.hiddenSize + p.intermediateSize, p.hiddenSize + p.intermediateSize, p.intermediateSize + p.hiddenSize].reduce((n, d) => n + recipe.lora.r * d, 0);
      return p.numLayers * perLayer + 34 * p.hiddenSize + p.hiddenSize + p.hiddenSize * p.hiddenSize + p.hiddenSize;
    };
    for (const name of ['qwen2.5-0.5b', 'qwen2.5-1.5b'] as const) {
      const plan = planMemory(
        base({
          config: preset(name),
          trainableValues: trainable(name),
          mappedBytes: 2 * (name === 'qwen2.5-0.5b' ? 494_032_768 : 1_543_714_304),
          maxTokens: recipe.prompt.max_tokens,
          batchSize: recipe.data.batch_size,
          gradientCheckpointing: recipe.train.gradient_checkpointing,
          prefetchBytes: recipe.data.prefetch_bytes,
        }),
      );
      expect(plan.refusal, name).toBeNull();
      expect(plan.checkpointing, name).toBe(true);
    }
  });

  it('reads a host limit no larger than the machine', () => {
    const limit = hostMemoryLimit();
    expect(limit.bytes).toBeGreaterThan(0);
    expect(limit.bytes).toBeLessThanOrEqual(os.totalmem());
  });

  it('takes train.gradient_checkpointing as auto, true or false', () => {
    const text = 'output_dir: out\nmodel: {path: m}\ndata: {shards: s}\n';
    expect(parseRecipe(text).train.gradient_checkpointing).toBe('auto');
    expect(parseRecipe(text, ['train.gradient_checkpointing=true']).train.gradient_checkpointing).toBe(true);
    expect(parseRecipe(`${text}train: {gradient_checkpointing: false}\n`).train.gradient_checkpointing).toBe(false);
    expect(() => parseRecipe(text, ['train.gradient_checkpointing=yes'])).toThrow('train.gradient_checkpointing: expected auto, true or false, found string "yes"');
  });
});

describe('the activation estimate against a measured step', () => {
  const dir = path.join(root, 'model');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', log: null });
    await writeTinyModel(dir, { hiddenSize: 128, intermediateSize: 352, numLayers: 3, numHeads: 4, numKvHeads: 2, vocabSize: 400, dtype: 'BF16', seed: 5 });
  });

  /** tf.profile's peak bytes of one LoRA (all modules) + projector training step, less what the model held before. */
  async function measuredPeak(seq: number, checkpoint: boolean): Promise<{ peak: number; trainable: number; config: MemoryPlanInput['config'] }> {
    const model = await loadModel(dir, { log: () => {} });
    try {
      model.addLora({ rank: 8, alpha: 16, dropout: 0.1, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], seed: 1 });
      model.addProjector({ featureDim: 64, seed: 2 });
      model.gradientCheckpointing = checkpoint;
      const vid = model.videoTokenId!;
      const ids = new Int32Array(seq);
      const labels = new Int32Array(seq);
      for (let t = 0; t < seq; t++) {
        ids[t] = t >= 2 && t < 18 ? vid : 3 + ((t * 7919) % 300);
        labels[t] = t < 20 ? -100 : ids[t]!;
      }
      const features = { data: Float32Array.from({ length: 16 * 64 }, (_, i) => Math.sin(i)), shape: [1, 16, 64] as [number, number, number] };
      const vars = model.trainableVariables();
      const before = tf.memory().numBytes;
      const prof = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => {
          const r = model.computeLoss({ inputIds: ids, batch: 1, video: { features } }, labels, { training: true, seed: 1 });
          return tf.div(r.sum, r.count) as tf.Scalar;
        }, vars);
        tf.dispose(Object.values(grads));
        return value;
      });
      const c = model.config;
      return { peak: prof.peakBytes - before, trainable: vars.reduce((n, v) => n + v.size, 0), config: { hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize, numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim } };
    } finally {
      model.dispose();
    }
  }

  for (const checkpoint of [false, true]) {
    it(`covers the measured peak without overstating it more than 2.5x (checkpointing ${checkpoint ? 'on' : 'off'})`, async () => {
      const seq = 384;
      const m = await measuredPeak(seq, checkpoint);
      // Gradients of the trainable values are part of the measured peak; the plan counts them in its state.
      const estimate = activationBytes(m.config, seq, checkpoint) + 4 * m.trainable;
      expect(estimate).toBeGreaterThanOrEqual(m.peak);
      expect(estimate).toBeLessThanOrEqual(2.5 * m.peak);
    });
  }

  it('checkpointing lowers the measured peak', async () => {
    const off = await measuredPeak(384, false);
    const on = await measuredPeak(384, true);
    expect(on.peak).toBeLessThan(0.6 * off.peak);
  });
});
