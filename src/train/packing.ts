/**
 * How a step's samples become micro-batches (`data.packing`, `data.group_by_length`).
 *
 * The window is one optimizer step: the trainable samples of its `train.grad_accum_steps` loader
 * batches, in the loader's deterministic order. Nothing crosses a step, so a checkpoint (always
 * taken between steps, with the loader's position) resumes to the same rows.
 *
 * - packed: first-fit decreasing into rows of at most `prompt.max_tokens` (longest first, ties in
 *   loader order; each sample into the first row with room), whole samples only, each with its own
 *   video tokens, system prompt and loss mask; then rows in their order of creation, `batchSize`
 *   rows per micro-batch. A row's samples are isolated: positions restart at 0 and attention is
 *   block-diagonal causal (`segmentStarts`, src/model/decoder.ts).
 * - grouped: the samples sorted longest first (ties in loader order), `batchSize` per micro-batch,
 *   so each micro-batch pads to a length close to its own samples'.
 */
import { packBatch, type PackedBatch, type PreparedSample } from './pack.js';

export type Arrangement = 'packed' | 'grouped' | 'padded';

/** The arrangement a recipe's data section asks for. */
export function arrangementOf(data: { packing: boolean; group_by_length: boolean }): Arrangement {
  return data.packing ? 'packed' : data.group_by_length ? 'grouped' : 'padded';
}

const lengthOf = (s: PreparedSample) => s.prompt.inputIds.length;

/** Sample indices longest first, ties in their given order (a stable sort). */
function longestFirst(samples: PreparedSample[]): number[] {
  return samples.map((_, i) => i).sort((a, b) => lengthOf(samples[b]!) - lengthOf(samples[a]!) || a - b);
}

/**
 * First-fit decreasing: rows of sample indices, each row's lengths summing to at most
 * `maxTokens`, samples in a row kept in their given order. A sample longer than `maxTokens`
 * (the prompt skips those first) gets a row of its own.
 */
export function firstFitDecreasing(lengths: number[], maxTokens: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const rows: number[][] = [];
  const used: number[] = [];
  for (const i of order) {
    const n = lengths[i]!;
    let r = used.findIndex((u) => u + n <= maxTokens);
    if (r < 0) {
      r = rows.length;
      rows.push([]);
      used.push(0);
    }
    rows[r]!.push(i);
    used[r]! += n;
  }
  for (const row of rows) row.sort((a, b) => a - b);
  return rows;
}

/** The micro-batches of one step's samples (in loader order), arranged as `mode` says. */
export function arrangeStep(samples: PreparedSample[], mode: Arrangement, o: { batchSize: number; maxTokens: number; featureDim: number }): PackedBatch[] {
  const out: PackedBatch[] = [];
  if (mode === 'packed') {
    const rows = firstFitDecreasing(samples.map(lengthOf), o.maxTokens).map((row) => row.map((i) => samples[i]!));
    for (let r = 0; r < rows.length; r += o.batchSize) out.push(packRows(rows.slice(r, r + o.batchSize), o.featureDim));
    return out;
  }
  const order = mode === 'grouped' ? longestFirst(samples) : samples.map((_, i) => i);
  for (let i = 0; i < order.length; i += o.batchSize) out.push(packBatch(order.slice(i, i + o.batchSize).map((j) => samples[j]!), o.featureDim));
  return out;
}

/**
 * Packed rows as one micro-batch: each row the concatenation of its samples, right-padded to the
 * longest row; `segmentStarts` gives each position its sample's first position (padding is a
 * segment of its own), `rows` the sample ids per row. A sample's first position never carries a
 * target (its label would follow the previous sample's last token).
 */
export function packRows(rows: PreparedSample[][], featureDim: number): PackedBatch {
  const B = rows.length;
  const L = Math.max(1, ...rows.map((row) => row.reduce((n, s) => n + lengthOf(s), 0)));
  const inputIds = new Int32Array(B * L);
  const attentionMask = new Uint8Array(B * L);
  const targetMask = new Uint8Array(B * L);
  const focusMask = new Uint8Array(B * L);
  const segmentStarts = new Int32Array(B * L);
  let V = 0;
  for (const row of rows) for (const s of row) V += s.prompt.videoPositions.length;
  const videoPositions = new Int32Array(V);
  const videoFeatures = new Float32Array(V * featureDim);
  let v = 0;
  let trained = 0;
  let tokens = 0;
  rows.forEach((row, b) => {
    let at = 0;
    for (const s of row) {
      const p = s.prompt;
      const n = p.inputIds.length;
      for (let t = 0; t < n; t++) {
        const id = p.inputIds[t]!;
        const pos = b * L + at + t;
        inputIds[pos] = id < 0 ? 0 : id;
        attentionMask[pos] = 1;
        targetMask[pos] = t === 0 ? 0 : p.lossMask[t]!;
        focusMask[pos] = p.focusMask[t]!;
        segmentStarts[pos] = at;
        trained += targetMask[pos]!;
      }
      const count = p.videoPositions.length;
      if (count > 0 && s.frames.length < count * featureDim) {
        throw new Error(`pack: sample ${s.sampleId}: ${count} video tokens but features for ${s.frames.length / featureDim}`);
      }
      for (let k = 0; k < count; k++) videoPositions[v + k] = b * L + at + p.videoPositions[k]!;
      videoFeatures.set(s.frames.subarray(0, count * featureDim), v * featureDim);
      v += count;
      at += n;
      tokens += n;
    }
    for (let t = at; t < L; t++) segmentStarts[b * L + t] = at;
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
    sampleIds: rows.flat().map((s) => s.sampleId),
    segmentStarts,
    rows: rows.map((row) => row.map((s) => s.sampleId)),
  };
}

/** Real tokens over computed positions (rows x padded length) of a step's micro-batches: 1 - the padding share. */
export function fillRatio(micro: PackedBatch[]): number {
  const positions = micro.reduce((n, m) => n + m.batch * m.seqLen, 0);
  return positions === 0 ? 0 : micro.reduce((n, m) => n + m.tokens, 0) / positions;
}
