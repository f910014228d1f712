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
 * - the native kernels' scratch (src/native/scratch.h: GEMM packing buffers per thread, the
 *   attention's score rows, the cross-entropy's logits chunk and partial sums), host memory
 *   outside every tensor heap: nativeScratchBytes();
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
import { crossEntropyChunkRows } from '../model/frozen.js';
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
  /** Bytes of native kernel scratch (nativeScratchBytes()); 0 or absent when they do not run. */
  scratchBytes?: number;
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
  /** Native kernel scratch (host memory outside the tensors). */
  scratchBytes: number;
  /** Peak host memory: tensors (host or wasm heap), mapped weights resident, kernel scratch, prefetch, the process. */
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

/** The C++ kernels' sizes that decide their scratch (mirrors of gemm.cc, attention.cc, xent.h). */
const NATIVE = {
  /** A GEMM thread's packed blocks of A (kMC x kKC floats) and B (kKC x kNC floats). */
  gemmPackBytes: 4 * (96 * 256 + 256 * 1024),
  /** op(B) packed once per call, shared by the threads (kMaxSharedB floats at most). */
  sharedBBytes: 4 * 2 ** 22,
  /** A GEMM task's rows (2 x kMC): more rows than this make a shared op(B) worth packing. */
  gemmTileRows: 192,
  /** Query rows per attention block (kRows). */
  attentionRows: 48,
  /** The cross-entropy's partial sums of dH (kXentPartialBytes). */
  xentPartialBytes: 4 * 2 ** 20,
};

export interface NativeScratchInput {
  config: Pick<DecoderConfig, 'hiddenSize' | 'vocabSize' | 'numHeads' | 'headDim'>;
  /** Threads of the native kernels' pool, the calling thread included. */
  threads: number;
  /** Tokens per sample at most (prompt.max_tokens) and samples per micro-batch. */
  maxTokens: number;
  batchSize: number;
}

/**
 * The most scratch rpv's native kernels hold during a training step (src/native/scratch.h): per
 * pool thread, the GEMM's packing buffers and the fused attention's score rows; once, op(B) packed
 * for a call, the attention backward's per-head dK/dV parts and the chunked cross-entropy's logits
 * and partial sums (bounded whatever the threads; test/native/scratch.test.ts holds the kernels to
 * this figure).
 */
export function nativeScratchBytes({ config, threads, maxTokens, batchSize }: NativeScratchInput): number {
  const { hiddenSize: hidden, vocabSize: vocab, numHeads: heads, headDim } = config;
  const roundUp = (v: number, to: number) => Math.ceil(v / to) * to;
  const floats = (n: number) => roundUp(4 * n, 64);
  const attentionPerThread = floats(NATIVE.attentionRows * maxTokens) * 3;
  const attentionParts = 2 * 4 * batchSize * heads * maxTokens * headDim;
  const chunk = Math.min(crossEntropyChunkRows(vocab), maxTokens * batchSize);
  const tasks = Math.max(1, Math.min(4 * threads, Math.ceil(vocab / 1024)));
  const cols = Math.min(hidden, Math.max(16, Math.floor(NATIVE.xentPartialBytes / (4 * tasks * chunk) / 16) * 16));
  const xent = floats(chunk * vocab) + floats(tasks * chunk * cols);
  // Slices of dH with more rows than a GEMM tile pack their op(B) once on each pool thread.
  const perSlice = Math.ceil(vocab / tasks) * roundUp(cols, 16);
  const sliceSharedB = chunk > NATIVE.gemmTileRows && perSlice <= NATIVE.sharedBBytes / 4 ? (threads - 1) * floats(perSlice) : 0;
  return threads * (NATIVE.gemmPackBytes + attentionPerThread) + NATIVE.sharedBBytes + attentionParts + xent + sliceSharedB;
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
  const scratchBytes = input.scratchBytes ?? 0;
  const hostBytes = tensorBytes + input.mappedBytes + scratchBytes + input.prefetchBytes + PROCESS_BASE_BYTES;

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
      `${scratchBytes > 0 ? `native kernel scratch ${gib(scratchBytes)}, ` : ''}` +
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
    scratchBytes,
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
    ...(plan.scratchBytes > 0 ? [`native kernel scratch (outside the tensors): about ${gib(plan.scratchBytes)}`] : []),
    `process at peak: about ${gib(plan.hostBytes)} of ${gib(plan.hostLimit.bytes)} (${plan.hostLimit.source})`,
  ];
}

/** Throw the plan's refusal, if any. */
export function assertFits(plan: MemoryPlan): void {
  if (plan.refusal) throw new RpvError(plan.refusal);
}
