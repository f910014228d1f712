/**
 * The memory plan of a training run, made before the first step: where each part lives, how big it
 * is at the recipe's longest sample, and whether it fits. A run that cannot fit stops here, with
 * the sizes and what to change, instead of dying mid-step ("memory access out of bounds" from the
 * wasm heap, or the kernel's OOM killer).
 *
 * Parts:
 * - frozen weights: mapped in place (src/native/mapped.cc; resident as page cache, outside every
 *   heap) or float32 tensors in the backend's heap;
 * - trainable state: LoRA + projector values, their gradients (and the accumulation buffer), and
 *   AdamW's two moments: 20 bytes per trainable value;
 * - activations saved for the backward pass at `prompt.max_tokens` x `data.batch_size` tokens: every
 *   layer's intermediates, or with gradient checkpointing one hidden state per layer plus the
 *   working set of the layer being recomputed;
 * - the loader's prefetch buffer and the process itself (host memory only).
 *
 * The activation coefficients are fitted to tf.profile's peak bytes of a LoRA (all seven modules)
 * + projector step on the wasm backend with rpv's fused attention and chunked cross-entropy, at
 * two shapes (hidden 256 / intermediate 640 and Qwen2.5-0.5B's 896 / 4864), rounded up;
 * test/train/memory.test.ts holds the estimate against a measured step.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { DecoderConfig } from '../model/config.js';
import { RpvError } from '../util/errors.js';

/** tfjs-wasm's heap is a wasm32 memory: it cannot grow past 4 GiB. */
export const WASM_HEAP_LIMIT = 4 * 2 ** 30;
/** Above this share of the tensor memory, `gradient_checkpointing: auto` turns checkpointing on. */
export const CHECKPOINT_AUTO_SHARE = 0.5;
/** What Node, tfjs, the tokenizer and the loader's workers take before any tensor (measured ~250 MB). */
const PROCESS_BASE_BYTES = 400 * 2 ** 20;
/** Tensors that are neither state nor activations (embedding rows, masks, rope tables, scratch). */
const HEAP_BASE_BYTES = 64 * 2 ** 20;

/** Floats saved per token per decoder layer without checkpointing: a*intermediate + b*hidden + c*kv. */
const PER_LAYER = { intermediate: 4, hidden: 42, kv: 4 };
/** With checkpointing: one hidden state per layer, plus this many layers' worth of working set. */
const RECOMPUTE_LAYERS = 3.5;

export interface MemoryPlanInput {
  config: Pick<DecoderConfig, 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numKvHeads' | 'headDim'>;
  /** Trainable values (LoRA + projector). */
  trainableValues: number;
  /** Bytes of frozen weights held as tensors (0 when mapped). */
  weightHeapBytes: number;
  /** Bytes of the mapped weight files (0 when the weights are tensors). */
  mappedBytes: number;
  /** Tokens per sample at most (prompt.max_tokens) and samples per micro-batch. */
  maxTokens: number;
  batchSize: number;
  gradientCheckpointing: 'auto' | boolean;
  prefetchBytes: number;
  /** The backend's tensors live in a wasm heap (4 GiB at most) or in host memory. */
  backend: string;
  /** Host memory the process may use; default: hostMemoryLimit(). */
  hostLimit?: { bytes: number; source: string };
}

export interface MemoryPlan {
  checkpointing: boolean;
  /** Why checkpointing is on or off. */
  checkpointingReason: string;
  weightHeapBytes: number;
  mappedBytes: number;
  stateBytes: number;
  activationBytes: number;
  /** Activations without checkpointing (what `auto` compared). */
  activationBytesFull: number;
  /** Peak bytes of tensors: weights held as tensors + state + activations + scratch. */
  tensorBytes: number;
  /** Where tensors live and how much they may take. */
  tensorLimit: { bytes: number; source: string };
  /** Peak host memory: tensors (host or wasm heap), mapped weights resident, prefetch, the process. */
  hostBytes: number;
  hostLimit: { bytes: number; source: string };
  /** Why the run cannot fit; null when it fits. */
  refusal: string | null;
}

/** The memory the process may use: the cgroup's limit when set and lower than the machine's memory. */
export function hostMemoryLimit(): { bytes: number; source: string } {
  const total = { bytes: os.totalmem(), source: 'the machine\'s memory' };
  for (const [file, name] of [
    ['/sys/fs/cgroup/memory.max', 'the cgroup limit (memory.max)'],
    ['/sys/fs/cgroup/memory/memory.limit_in_bytes', 'the cgroup limit (memory.limit_in_bytes)'],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    const n = Number(text);
    if (Number.isFinite(n) && n > 0 && n < total.bytes) return { bytes: n, source: name };
  }
  return total;
}

export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

/** Activation bytes saved for the backward pass at `tokens` tokens in all. */
export function activationBytes(config: MemoryPlanInput['config'], tokens: number, checkpointing: boolean): number {
  const c = config;
  const perLayer = PER_LAYER.intermediate * c.intermediateSize + PER_LAYER.hidden * c.hiddenSize + PER_LAYER.kv * c.numKvHeads * c.headDim;
  const floats = checkpointing ? c.numLayers * c.hiddenSize + RECOMPUTE_LAYERS * perLayer : c.numLayers * perLayer;
  return 4 * tokens * floats;
}

export function planMemory(input: MemoryPlanInput): MemoryPlan {
  const tokens = input.maxTokens * input.batchSize;
  const stateBytes = 20 * input.trainableValues;
  const full = activationBytes(input.config, tokens, false);
  const light = activationBytes(input.config, tokens, true);
  const hostLimit = input.hostLimit ?? hostMemoryLimit();
  const onWasm = input.backend === 'wasm';
  const tensorLimit = onWasm ? { bytes: WASM_HEAP_LIMIT, source: 'the wasm backend\'s heap' } : hostLimit;
  const fixed = input.weightHeapBytes + stateBytes + HEAP_BASE_BYTES;

  let checkpointing: boolean;
  let checkpointingReason: string;
  if (input.gradientCheckpointing === 'auto') {
    checkpointing = fixed + full > CHECKPOINT_AUTO_SHARE * tensorLimit.bytes;
    checkpointingReason = checkpointing
      ? `auto: activations of every layer (${gib(full)}) would take more than half of ${tensorLimit.source} with the rest`
      : `auto: activations of every layer (${gib(full)}) fit in half of ${tensorLimit.source}`;
  } else {
    checkpointing = input.gradientCheckpointing;
    checkpointingReason = `train.gradient_checkpointing=${checkpointing}`;
  }
  const activation = checkpointing ? light : full;
  const tensorBytes = fixed + activation;
  // Mapped weights are read in full every step, so all their pages are resident (as page cache).
  const hostBytes = tensorBytes + input.mappedBytes + input.prefetchBytes + PROCESS_BASE_BYTES;

  let refusal: string | null = null;
  const parts =
    `${input.weightHeapBytes > 0 ? `frozen weights as tensors ${gib(input.weightHeapBytes)}, ` : ''}` +
    `trainable state ${gib(stateBytes)} (${input.trainableValues.toLocaleString('en-US')} values x 20 bytes), ` +
    `activations ${gib(activation)} at prompt.max_tokens=${input.maxTokens} x data.batch_size=${input.batchSize}` +
    `${checkpointing ? ' with gradient checkpointing' : ''}`;
  const remedies: string[] = [];
  if (!checkpointing) remedies.push('set train.gradient_checkpointing=true');
  remedies.push('lower prompt.max_tokens or data.batch_size (raise train.grad_accum_steps to keep the batch)');
  if (input.weightHeapBytes > 0 && onWasm) remedies.push('load the weights mapped (BF16/F16/F32 safetensors with rpv\'s native addon)');
  if (tensorBytes > tensorLimit.bytes) {
    refusal = `train: the run needs about ${gib(tensorBytes)} of tensors (${parts}) but ${tensorLimit.source} holds ${gib(tensorLimit.bytes)}: ${remedies.join('; or ')}`;
  } else if (hostBytes > hostLimit.bytes) {
    const hostRemedies = [...remedies];
    if (input.prefetchBytes > 256 * 2 ** 20) hostRemedies.push('lower data.prefetch_bytes');
    refusal =
      `train: the run needs about ${gib(hostBytes)} of memory (${parts}; mapped weights ${gib(input.mappedBytes)}, ` +
      `loader prefetch ${gib(input.prefetchBytes)}) but ${hostLimit.source} is ${gib(hostLimit.bytes)}: ${hostRemedies.join('; or ')}`;
  }
  return {
    checkpointing,
    checkpointingReason,
    weightHeapBytes: input.weightHeapBytes,
    mappedBytes: input.mappedBytes,
    stateBytes,
    activationBytes: activation,
    activationBytesFull: full,
    tensorBytes,
    tensorLimit,
    hostBytes,
    hostLimit,
    refusal,
  };
}

/** The plan as the lines `--dry-run` prints and a run logs. */
export function describePlan(plan: MemoryPlan): string[] {
  return [
    `frozen weights: ${plan.mappedBytes > 0 ? `${gib(plan.mappedBytes)} mapped from the safetensors files (page cache, outside the heap)` : ''}${plan.mappedBytes > 0 && plan.weightHeapBytes > 0 ? '; ' : ''}${plan.weightHeapBytes > 0 ? `${gib(plan.weightHeapBytes)} as float32 tensors` : ''}`,
    `trainable state (values, gradients, accumulated gradients, AdamW moments): ${gib(plan.stateBytes)}`,
    `activations at the longest sample: ${gib(plan.activationBytes)} (gradient checkpointing ${plan.checkpointing ? 'on' : 'off'}: ${plan.checkpointingReason}; without it ${gib(plan.activationBytesFull)})`,
    `tensors at peak: about ${gib(plan.tensorBytes)} of ${gib(plan.tensorLimit.bytes)} (${plan.tensorLimit.source})`,
    `process at peak: about ${gib(plan.hostBytes)} of ${gib(plan.hostLimit.bytes)} (${plan.hostLimit.source})`,
  ];
}

/** Throw the plan's refusal, if any. */
export function assertFits(plan: MemoryPlan): void {
  if (plan.refusal) throw new RpvError(plan.refusal);
}
