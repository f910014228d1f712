/**
 * The trainer's view of the model (src/model): a PromptTokenizer over the model's ChatTokenizer,
 * the packed batch turned into the model's forward input and labels, the trainable parameters
 * with their groups, and per-token losses for evaluation.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import type { CausalLM, ForwardInput } from '../model/decoder.js';
import type { ChatTokenizer } from '../model/tokenizer.js';
import { projectorTensorNames } from '../model/projector.js';
import { RpvError } from '../util/errors.js';
import type { Param } from './adamw.js';
import type { PackedBatch } from './pack.js';
import type { ChatMessage, PromptTokenizer } from './prompt.js';

const IGNORE_INDEX = -100;

/** Wrap the model's tokenizer for prompt rendering (BOS added when the tokenizer asks for it). */
export function promptTokenizer(tok: ChatTokenizer): PromptTokenizer {
  const addBos = (tok.config as Record<string, unknown>).add_bos_token === true && !!tok.bosToken;
  return {
    encode: (text) => tok.encode(text),
    decode: (ids) => tok.decode(ids),
    renderChat: (messages: ChatMessage[], { addGenerationPrompt }) => {
      const text = tok.applyChatTemplate(messages, { addGenerationPrompt });
      return addBos && !text.startsWith(tok.bosToken!) ? tok.bosToken! + text : text;
    },
    eosToken: tok.eosToken ?? null,
    // An InternVL tokenizer (its <img> and <IMG_CONTEXT>): frames as InternVL's video chat writes them.
    frameLayout: tok.tokenToId('<IMG_CONTEXT>') !== undefined && tok.tokenToId('<img>') !== undefined ? 'internvl' : 'rpv',
  };
}

/** LoRA pairs (group `lora`) and projector weights (group `projector`), named as saved. */
export function trainableParams(model: CausalLM, { video }: { video: boolean }): Param[] {
  const params: Param[] = [];
  for (const pair of model.loraPairs()) {
    params.push({ name: `${pair.name}.lora_A.weight`, variable: pair.aT, group: 'lora' });
    params.push({ name: `${pair.name}.lora_B.weight`, variable: pair.bT, group: 'lora' });
  }
  if (video && model.projector && !model.projectorFrozen) {
    for (const t of projectorTensorNames(model.projector)) params.push({ name: t.name, variable: t.variable, group: 'projector' });
  }
  return params;
}

/** The packed batch as the model's forward input (video placeholders, features per sample) and labels. */
export function forwardInput(model: CausalLM, batch: PackedBatch): { input: ForwardInput; labels: Int32Array } {
  const { batch: B, seqLen: L } = batch;
  const ids = Int32Array.from(batch.inputIds);
  const labels = new Int32Array(B * L).fill(IGNORE_INDEX);
  for (let i = 0; i < B * L; i++) if (batch.targetMask[i]) labels[i] = ids[i]!;
  const input: ForwardInput = { inputIds: ids, batch: B, attentionMask: batch.attentionMask };
  // Packed rows: block-diagonal causal attention, positions restarting at each sample.
  if (batch.segmentStarts) input.segmentStarts = batch.segmentStarts;
  if (batch.videoPositions.length > 0) {
    if (model.videoTokenId === undefined) throw new RpvError('train: the model has no video placeholder token id');
    const perSample = new Array<number>(B).fill(0);
    for (const p of batch.videoPositions) perSample[Math.floor(p / L)]! += 1;
    const rows = Math.max(...perSample);
    const D = batch.featureDim;
    const features = new Float32Array(B * rows * D);
    const seen = new Array<number>(B).fill(0);
    batch.videoPositions.forEach((p, v) => {
      const b = Math.floor(p / L);
      ids[p] = model.videoTokenId!;
      features.set(batch.videoFeatures.subarray(v * D, (v + 1) * D), (b * rows + seen[b]!++) * D);
    });
    input.video = { features: { data: features, shape: [B, rows, D] } };
  }
  return { input, labels };
}

/**
 * Summed loss of a batch for training: a differentiable scalar (sum of -log p over targets).
 * Call inside tf.variableGrads.
 */
export function lossSum(model: CausalLM, batch: PackedBatch, options: { training: boolean; seed?: number }): tfc.Scalar {
  const { input, labels } = forwardInput(model, batch);
  return model.computeLoss(input, labels, { training: options.training, seed: options.seed }).sum;
}

/**
 * -log p of every target, in position order, with its focus flag (evaluation; no gradient). The
 * model's chunked cross-entropy computes them: no [targets x vocabulary] logits.
 */
export async function targetLosses(model: CausalLM, batch: PackedBatch): Promise<{ nll: Float32Array; focus: Uint8Array }> {
  const { input, labels } = forwardInput(model, batch);
  const L = batch.seqLen;
  const focus: number[] = [];
  for (let b = 0; b < batch.batch; b++) {
    for (let t = 0; t + 1 < L; t++) if (labels[b * L + t + 1]! !== IGNORE_INDEX) focus.push(batch.focusMask[b * L + t + 1]!);
  }
  const nll = await model.labelNll(input, labels);
  return { nll, focus: Uint8Array.from(focus) };
}
