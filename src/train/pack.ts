/**
 * Packing rendered prompts into one right-padded micro-batch: token ids, attention and target
 * masks [B, L], and the video features of every video position in sequence order, so the model
 * can place projected frame tokens at `videoPositions`.
 */
import type { RenderedPrompt } from './prompt.js';

export interface PackedBatch {
  batch: number;
  /** Padded sequence length. */
  seqLen: number;
  /** [B * L] token ids; 0 at video and padding positions. */
  inputIds: Int32Array;
  /** [B * L] 1 for real positions (text or video), 0 for padding. */
  attentionMask: Uint8Array;
  /** [B * L] 1 where the position's token is a training target. */
  targetMask: Uint8Array;
  /** [B * L] 1 where the target is a focus word (held-out analysis). */
  focusMask: Uint8Array;
  /** [V] flattened positions (b * L + t) of the video tokens, in temporal order per sample. */
  videoPositions: Int32Array;
  /** [V, featureDim] features of those tokens. */
  videoFeatures: Float32Array;
  featureDim: number;
  /** Targets in the batch. */
  trainedTokens: number;
  /** Real (unpadded) positions in the batch. */
  tokens: number;
  sampleIds: string[];
  /** Packed rows only (src/train/packing.ts): [B * L] each position's sample's first position in its row. */
  segmentStarts?: Int32Array;
  /** Packed rows only: the sample ids of each row. */
  rows?: string[][];
}

/** One sample ready to pack: its prompt and its frames ([numFrames, tokensPerFrame, dim], copied). */
export interface PreparedSample {
  sampleId: string;
  prompt: RenderedPrompt;
  frames: Float32Array;
}

export function packBatch(samples: PreparedSample[], featureDim: number): PackedBatch {
  const B = samples.length;
  const L = Math.max(1, ...samples.map((s) => s.prompt.inputIds.length));
  const inputIds = new Int32Array(B * L);
  const attentionMask = new Uint8Array(B * L);
  const targetMask = new Uint8Array(B * L);
  const focusMask = new Uint8Array(B * L);
  let V = 0;
  for (const s of samples) V += s.prompt.videoPositions.length;
  const videoPositions = new Int32Array(V);
  const videoFeatures = new Float32Array(V * featureDim);
  let v = 0;
  let trained = 0;
  let tokens = 0;
  samples.forEach((s, b) => {
    const p = s.prompt;
    const n = p.inputIds.length;
    for (let t = 0; t < n; t++) {
      const id = p.inputIds[t]!;
      inputIds[b * L + t] = id < 0 ? 0 : id;
      attentionMask[b * L + t] = 1;
      targetMask[b * L + t] = p.lossMask[t]!;
      focusMask[b * L + t] = p.focusMask[t]!;
    }
    tokens += n;
    trained += p.trainedTokens;
    const count = p.videoPositions.length;
    if (count > 0 && s.frames.length < count * featureDim) {
      throw new Error(`pack: sample ${s.sampleId}: ${count} video tokens but features for ${s.frames.length / featureDim}`);
    }
    for (let k = 0; k < count; k++) videoPositions[v + k] = b * L + p.videoPositions[k]!;
    videoFeatures.set(s.frames.subarray(0, count * featureDim), v * featureDim);
    v += count;
  });
  return {
    batch: B,
    seqLen: L,
    inputIds,
    attentionMask,
    targetMask,
    focusMask,
    videoPositions,
    videoFeatures,
    featureDim,
    trainedTokens: trained,
    tokens,
    sampleIds: samples.map((s) => s.sampleId),
  };
}
