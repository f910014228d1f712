/**
 * The decoder-only language model (Llama / Qwen2 layout) in tfjs: frozen base weights as plain
 * tensors, trainable LoRA pairs and video projector as tf.Variables, a forward that splices
 * projected video tokens at the video placeholder, a KV cache for generation, and the
 * cross-entropy over label positions.
 *
 * Tensors are [B * T, hidden] between layers so every linear is one 2-D matmul; attention
 * reshapes to 4-D. No op here needs UnsortedSegmentSum or Einsum (absent in tfjs-wasm).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import type { DecoderConfig } from './config.js';
import { residualBlock } from './block.js';
import { rmsNorm } from './rmsnorm.js';
import { ropeTables, rotateHalfMatrix, tileRopeTables } from './rope.js';
import { attention, type AttentionLora, type AttentionWeights, type LayerCache } from './attention.js';
import { mlp, type MlpLora, type MlpWeights } from './mlp.js';
import {
  createLoraPair,
  DEFAULT_LORA,
  LORA_MODULES,
  loraScaling,
  normalizeTargetModules,
  type LoraConfig,
  type LoraModule,
  type LoraPair,
  type LoraRun,
} from './lora.js';
import type { InternVLConfig } from './internvl.js';
import { createProjector, project, projectorVariables, type Projector, type ProjectorConfig } from './projector.js';
import { frozenCrossEntropySum, frozenGather, gatherRows } from './ops.js';
import { crossEntropyChunkRows, type FrozenTable } from './frozen.js';
import { checkpointed } from './checkpoint.js';
import { seededRandom } from '../util/random.js';
import type { MappedFile } from '../native/frozen.js';
import { nativeAttentionAvailable } from '../native/attention.js';
import type { ChatTokenizer } from './tokenizer.js';

/** Label value that is not trained (as PyTorch's CrossEntropyLoss ignore_index). */
export const IGNORE_INDEX = -100;

/** Additive mask value for positions that may not be attended (finite: a fully masked row stays finite). */
const MASKED = -1e9;

export interface LayerWeights {
  inputNorm: tfc.Tensor1D;
  postNorm: tfc.Tensor1D;
  attn: AttentionWeights;
  mlp: MlpWeights;
}

export interface DecoderWeights {
  /** Token embeddings [vocab, hidden]. */
  embed: FrozenTable;
  /** Output head [vocab, hidden]: the embeddings themselves when tied. */
  head: FrozenTable;
  layers: LayerWeights[];
  norm: tfc.Tensor1D;
  /** Files the mapped weights live in (closed by dispose). */
  mappedFiles?: MappedFile[];
}

/** Video frame features for a batch. */
export interface VideoInput {
  /**
   * [B, N, featureDim]: each sample's frame feature tokens in temporal order (frames x
   * tokensPerFrame, flattened). Sample b's k-th video placeholder token takes row k; rows beyond
   * its placeholders (padding frames) are unused.
   */
  features: tfc.Tensor3D | { data: Float32Array; shape: [number, number, number] };
}

export interface ForwardInput {
  /** Token ids, row-major [batch, seqLen]. */
  inputIds: ArrayLike<number>;
  batch: number;
  /**
   * 1 for real tokens, 0 for padding, row-major [batch, pastLen + seqLen] (covers cached positions
   * too). Default: all ones.
   */
  attentionMask?: ArrayLike<number>;
  /** Rotary positions [batch, seqLen]; default from the mask (cumulative count of real tokens - 1). */
  positionIds?: ArrayLike<number>;
  /**
   * Packed rows (several samples per row, src/train/packing.ts): [batch, seqLen], for each
   * position the first position of its sample. Attention is then block-diagonal causal (position
   * i reads [start, i]; `attentionMask` does not enter it), and positions default to i - start.
   * Not with a KV cache.
   */
  segmentStarts?: ArrayLike<number>;
  video?: VideoInput;
}

export interface ForwardOptions {
  /** Apply LoRA dropout. */
  training?: boolean;
  /** Seed for dropout masks (vary it per step for reproducible training). */
  seed?: number;
  /** KV cache to read earlier positions from and append this pass's keys and values to. */
  cache?: KvCache;
  /**
   * Inference only: free each layer's intermediates as soon as the next layer has its input
   * (gradients through such a pass are wrong). logits() and tokenLogprobs() always do this.
   */
  noGrad?: boolean;
  /** Recompute each layer in the backward pass instead of keeping its activations; default: the model's `gradientCheckpointing`. */
  checkpoint?: boolean;
}

/**
 * Rotary positions of packed rows: each position's distance from its sample's first position
 * (`starts` [B, T]), so every sample is positioned as if alone.
 */
export function segmentPositions(starts: ArrayLike<number>, seqLen: number): Int32Array {
  return Int32Array.from({ length: starts.length }, (_, i) => (i % seqLen) - starts[i]!);
}

/** Position of each frozen linear in a layer: LoRA dropout seeds are fixed by (layer, module). */
const MODULE_INDEX: Record<string, number> = { q: 0, k: 1, v: 2, o: 3, gate: 4, up: 5, down: 6 };

/** Keys and values of the positions seen so far, per layer. */
export class KvCache {
  layers: LayerCache[] | null = null;
  /** Positions held. */
  get length(): number {
    return this.layers ? this.layers[0].k.shape[2] : 0;
  }
  /** Replace the held tensors (disposing the old ones). */
  update(layers: LayerCache[]): void {
    const old = this.layers;
    this.layers = layers;
    if (old) for (const l of old) {
      l.k.dispose();
      l.v.dispose();
    }
  }
  dispose(): void {
    if (this.layers) for (const l of this.layers) {
      l.k.dispose();
      l.v.dispose();
    }
    this.layers = null;
  }
}

interface LayerLora {
  attn: AttentionLora;
  mlp: MlpLora;
}

/** Result of computeLoss: summed negative log-likelihood and the number of trained tokens. */
export interface LossResult {
  /** Sum of -log p(label) over trained positions (a differentiable scalar). */
  sum: tfc.Scalar;
  /** Trained positions; divide by the total over an accumulation window. */
  count: number;
}

export class CausalLM {
  lora: { config: LoraConfig; modules: LoraModule[]; layers: LayerLora[] } | null = null;
  projector: Projector | null = null;
  /** The projector keeps its weights (train.projector freeze): not among the trained parameters. */
  projectorFrozen = false;
  /** Token id of the video placeholder, where projected frame features go. */
  videoTokenId: number | undefined;
  tokenizer: ChatTokenizer | undefined;
  /** Set when the model was loaded from an InternVL chat folder (its language_model; mlp1 and the tower beside it). */
  internvl: InternVLConfig | undefined;
  /**
   * Recompute each decoder layer in the backward pass (torch.utils.checkpoint): activation memory
   * of one layer instead of all, for about one more forward pass of compute.
   */
  gradientCheckpointing = false;

  constructor(
    readonly tf: typeof tfc,
    readonly config: DecoderConfig,
    readonly weights: DecoderWeights,
    /** Folder it was loaded from. */
    readonly dir?: string,
  ) {}

  /** Add trainable LoRA pairs (PEFT names, A kaiming-uniform, B zeros). */
  addLora(options: Partial<LoraConfig> = {}): void {
    const tf = this.tf;
    const config: LoraConfig = { ...DEFAULT_LORA, ...options };
    if (!(Number.isInteger(config.rank) && config.rank >= 1)) throw new RpvError(`lora: rank must be a positive integer, found ${config.rank}`);
    if (!(config.dropout >= 0 && config.dropout < 1)) throw new RpvError(`lora: dropout must be in [0, 1), found ${config.dropout}`);
    const modules = normalizeTargetModules(config.targetModules);
    this.removeLora();
    const rng = seededRandom(config.seed ?? 0);
    const c = this.config;
    const dims: Record<LoraModule, [number, number]> = {
      q: [c.hiddenSize, c.numHeads * c.headDim],
      k: [c.hiddenSize, c.numKvHeads * c.headDim],
      v: [c.hiddenSize, c.numKvHeads * c.headDim],
      o: [c.numHeads * c.headDim, c.hiddenSize],
      gate: [c.hiddenSize, c.intermediateSize],
      up: [c.hiddenSize, c.intermediateSize],
      down: [c.intermediateSize, c.hiddenSize],
    };
    const layers: LayerLora[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const layer: LayerLora = { attn: {}, mlp: {} };
      for (const m of Object.keys(LORA_MODULES) as LoraModule[]) {
        if (!modules.includes(m)) continue;
        const group = m === 'gate' || m === 'up' || m === 'down' ? 'mlp' : 'self_attn';
        const pair = createLoraPair(tf, `base_model.model.model.layers.${i}.${group}.${LORA_MODULES[m]}`, dims[m][0], dims[m][1], config.rank, rng);
        if (group === 'mlp') (layer.mlp as Record<string, LoraPair>)[m] = pair;
        else (layer.attn as Record<string, LoraPair>)[m] = pair;
      }
      layers.push(layer);
    }
    this.lora = { config: { ...config, targetModules: modules }, modules, layers };
  }

  /** Every LoRA pair, layer by layer in module order. */
  loraPairs(): LoraPair[] {
    if (!this.lora) return [];
    const out: LoraPair[] = [];
    for (const l of this.lora.layers) {
      for (const p of [l.attn.q, l.attn.k, l.attn.v, l.attn.o, l.mlp.gate, l.mlp.up, l.mlp.down]) if (p) out.push(p);
    }
    return out;
  }

  removeLora(): void {
    for (const p of this.loraPairs()) {
      p.aT.dispose();
      p.bT.dispose();
    }
    this.lora = null;
  }

  /** Add a trainable video projector from `featureDim` to the hidden size. */
  addProjector(options: { featureDim: number; seed?: number; type?: ProjectorConfig['type'] }): Projector {
    if (this.projector) for (const v of projectorVariables(this.projector)) v.dispose();
    this.projector = createProjector(this.tf, { type: options.type ?? 'mlp2x_gelu', featureDim: options.featureDim, hiddenSize: this.config.hiddenSize }, options.seed ?? 0);
    return this.projector;
  }

  /** LoRA A/B and projector variables, in a fixed order (for optimizers and checkpoints). */
  trainableVariables(): tfc.Variable[] {
    const out: tfc.Variable[] = [];
    for (const p of this.loraPairs()) out.push(p.aT, p.bT);
    if (this.projector) out.push(...projectorVariables(this.projector));
    return out;
  }

  /** Input embeddings [B*T, hidden] with projected video features spliced in at placeholders. */
  embed(input: ForwardInput, seqLen: number): tfc.Tensor2D {
    const tf = this.tf;
    const n = input.batch * seqLen;
    const ids = Int32Array.from(input.inputIds as ArrayLike<number>);
    const text = frozenGather(tf, this.weights.embed, ids);
    const vid = this.videoTokenId;
    let placeholders = 0;
    if (vid !== undefined) for (let i = 0; i < n; i++) if (ids[i] === vid) placeholders++;
    if (!input.video) {
      if (placeholders > 0) throw new RpvError(`forward: the input has ${placeholders} video placeholder tokens (id ${vid}) but no video features were given`);
      return text;
    }
    if (!this.projector) throw new RpvError('forward: video features given but the model has no projector (call addProjector or load one)');
    if (vid === undefined) throw new RpvError('forward: video features given but the model has no video placeholder token id');
    const feats = input.video.features;
    const isTensor = feats instanceof tf.Tensor;
    const shape = feats.shape as [number, number, number];
    const [fb, rowsPerSample, dim] = shape;
    if (fb !== input.batch) throw new RpvError(`forward: video features have batch ${fb}, input ids have batch ${input.batch}`);
    // Row of the projected features each position takes; the zero row for text positions.
    const zeroRow = fb * rowsPerSample;
    const rowIndex = new Int32Array(n).fill(zeroRow);
    const keep = new Float32Array(n).fill(1);
    for (let b = 0; b < input.batch; b++) {
      let k = 0;
      for (let t = 0; t < seqLen; t++) {
        const p = b * seqLen + t;
        if (ids[p] !== vid) continue;
        if (k >= rowsPerSample) {
          throw new RpvError(`forward: sample ${b} has more video placeholder tokens than its ${rowsPerSample} video feature rows`);
        }
        rowIndex[p] = b * rowsPerSample + k++;
        keep[p] = 0;
      }
    }
    const featTensor = isTensor
      ? (tf.reshape(feats as tfc.Tensor3D, [fb * rowsPerSample, dim]) as tfc.Tensor2D)
      : tf.tensor2d((feats as { data: Float32Array }).data, [fb * rowsPerSample, dim]);
    const projected = project(tf, this.projector, featTensor);
    const withZero = tf.concat([projected, tf.zeros([1, this.config.hiddenSize])], 0) as tfc.Tensor2D;
    const video = gatherRows(tf, withZero, rowIndex);
    return tf.add(tf.mul(text, tf.tensor2d(keep, [n, 1])), video) as tfc.Tensor2D;
  }

  /**
   * Final hidden states [B*T, hidden] (after the last norm). Not tidied: call inside tf.tidy or
   * tf.variableGrads. With a cache, the cache's tensors are replaced by ones that include this pass.
   */
  hidden(input: ForwardInput, options: ForwardOptions = {}): tfc.Tensor2D {
    const tf = this.tf;
    const c = this.config;
    const B = input.batch;
    const total = input.inputIds.length;
    if (!(Number.isInteger(B) && B >= 1) || total % B !== 0) throw new RpvError(`forward: ${total} input ids do not split into batch ${B}`);
    const T = total / B;
    const past = options.cache?.length ?? 0;
    const S = past + T;
    const mask01 = input.attentionMask;
    if (mask01 && mask01.length !== B * S) {
      throw new RpvError(`forward: attentionMask has ${mask01.length} values, expected batch ${B} x ${S} positions (${past} cached + ${T} new)`);
    }
    const starts = input.segmentStarts;
    if (starts) {
      if (past > 0) throw new RpvError('forward: segmentStarts (packed rows) cannot be used with a KV cache');
      if (starts.length !== B * T) throw new RpvError(`forward: segmentStarts has ${starts.length} values, expected ${B * T}`);
      for (let i = 0; i < B * T; i++) {
        const st = starts[i]!;
        if (!(Number.isInteger(st) && st >= 0 && st <= i % T)) throw new RpvError(`forward: segmentStarts[${i}] is ${st}, expected an integer in [0, ${i % T}] (its position in the row)`);
      }
    }
    // The fused kernel keeps no keys and values: not when a KV cache is being filled.
    const fused = !options.cache && nativeAttentionAvailable();
    // Positions and the additive mask, built on the CPU once per pass.
    let positions: ArrayLike<number>;
    if (input.positionIds) {
      if (input.positionIds.length !== B * T) throw new RpvError(`forward: positionIds has ${input.positionIds.length} values, expected ${B * T}`);
      positions = input.positionIds;
    } else if (starts) {
      positions = segmentPositions(starts, T);
    } else {
      const pos = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        let count = 0;
        for (let j = 0; j < S; j++) {
          count += mask01 ? (mask01[b * S + j] ? 1 : 0) : 1;
          if (j >= past) pos[b * T + j - past] = Math.max(count - 1, 0);
        }
      }
      positions = pos;
    }
    // Packed rows on the fused kernel: the starts alone ([B, T]); no [T x S] mask.
    const segmentTable = starts && fused ? Float32Array.from(starts) : null;
    const mask = new Float32Array(segmentTable ? 0 : B * T * S);
    if (!segmentTable) {
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < T; i++) {
          const row = (b * T + i) * S;
          const first = starts ? starts[b * T + i]! : 0;
          for (let j = 0; j < S; j++) {
            const allowed = j <= past + i && (starts ? j >= first : !mask01 || mask01[b * S + j]);
            mask[row + j] = allowed ? 0 : MASKED;
          }
        }
      }
    }
    const { cos, sin } = ropeTables(c, positions);
    const tq = tileRopeTables(cos, sin, c.headDim, c.numHeads, 1 / Math.sqrt(c.headDim));
    const tk = tileRopeTables(cos, sin, c.headDim, c.numKvHeads);
    const N = B * T;
    let loraRun: ((layer: number, m: string) => LoraRun) | undefined;
    const lora = this.lora;
    if (lora) {
      const scaling = loraScaling(lora.config);
      const dropout = options.training ? lora.config.dropout : 0;
      const base = options.seed ?? 0;
      // One seed per (layer, module), so a recomputed layer draws the same dropout masks.
      loraRun = (layer, m) => ({ scaling, dropout, seed: dropout > 0 ? base * 1009 + layer * 7 + MODULE_INDEX[m] : undefined });
    }
    // Per-pass tables every layer reads: [cosQ, sinQ, cosK, sinK, rotate, mask].
    const tables: tfc.Tensor[] = [
      tf.tensor2d(tq.cos, [N, c.numHeads * c.headDim]),
      tf.tensor2d(tq.sin, [N, c.numHeads * c.headDim]),
      tf.tensor2d(tk.cos, [N, c.numKvHeads * c.headDim]),
      tf.tensor2d(tk.sin, [N, c.numKvHeads * c.headDim]),
      tf.tensor2d(rotateHalfMatrix(c.headDim), [c.headDim, c.headDim]),
      segmentTable ? tf.tensor2d(segmentTable, [B, T]) : tf.tensor4d(mask, [B, 1, T, S]),
    ];
    const contextOf = (t: tfc.Tensor[], layer: number) => ({
      batch: B,
      seqLen: T,
      cosQ: t[0] as tfc.Tensor2D,
      sinQ: t[1] as tfc.Tensor2D,
      cosK: t[2] as tfc.Tensor2D,
      sinK: t[3] as tfc.Tensor2D,
      rotate: t[4] as tfc.Tensor2D,
      mask: t[5],
      loraRun: loraRun ? (m: string) => loraRun!(layer, m) : undefined,
      fused,
      segments: segmentTable !== null,
    });
    let h = this.embed(input, T);
    const newCache: LayerCache[] = [];
    // recompute: the checkpointed backward's rerun, whose output value is never read.
    const layer = (i: number, x: tfc.Tensor2D, t: tfc.Tensor[], recompute = false): { h: tfc.Tensor2D; cache?: LayerCache } => {
      const w = this.weights.layers[i];
      const ll = lora?.layers[i];
      const ctx = contextOf(t, i);
      let cache: LayerCache | undefined;
      const h = residualBlock(tf, x, {
        norm1: (v) => rmsNorm(tf, v, w.inputNorm, c.rmsNormEps) as tfc.Tensor2D,
        mixer: (v) => {
          const a = attention(tf, c, v, w.attn, ll?.attn ?? {}, ctx, options.cache?.layers?.[i]);
          cache = a.cache;
          return a.out;
        },
        norm2: (v) => rmsNorm(tf, v, w.postNorm, c.rmsNormEps) as tfc.Tensor2D,
        ffn: (v) => mlp(tf, v, w.mlp, ll?.mlp ?? {}, ctx.loraRun, { outputUnused: recompute }),
      });
      return { h, cache };
    };
    const checkpoint = (options.checkpoint ?? this.gradientCheckpointing) && !options.noGrad && !options.cache;
    for (let i = 0; i < c.numLayers; i++) {
      if (options.noGrad) {
        // Free each layer's intermediates at once: a forward of a 0.5B model otherwise holds
        // every layer's activations until the caller's tidy ends.
        const [next, k, v] = tf.tidy(() => {
          const out = layer(i, h, tables);
          return out.cache ? [out.h, out.cache.k, out.cache.v] : [out.h];
        }) as [tfc.Tensor2D, tfc.Tensor4D?, tfc.Tensor4D?];
        h.dispose();
        h = next;
        if (k && v) newCache.push({ k, v });
      } else if (checkpoint) {
        const params: tfc.Variable[] = [];
        const ll = lora?.layers[i];
        if (ll) for (const p of [ll.attn.q, ll.attn.k, ll.attn.v, ll.attn.o, ll.mlp.gate, ll.mlp.up, ll.mlp.down]) if (p) params.push(p.aT, p.bT);
        h = checkpointed(tf, (x, t, recompute) => layer(i, x, t, recompute).h, h, tables, params);
      } else {
        const out = layer(i, h, tables);
        h = out.h;
        if (out.cache) newCache.push(out.cache);
      }
    }
    if (options.noGrad) for (const t of tables) t.dispose();
    if (options.noGrad && !options.cache) for (const l of newCache) {
      l.k.dispose();
      l.v.dispose();
    }
    if (options.cache) {
      for (const l of newCache) {
        tf.keep(l.k);
        tf.keep(l.v);
      }
      options.cache.update(newCache);
    }
    return rmsNorm(tf, h, this.weights.norm, c.rmsNormEps) as tfc.Tensor2D;
  }

  /** The LM head: hidden [M, H] -> logits [M, vocab] (no gradient; for generation and scoring). */
  lmHead(hidden: tfc.Tensor2D): tfc.Tensor2D {
    return this.weights.head.project(hidden);
  }

  /**
   * Logits [B*T, vocab], or [B, vocab] for each row's last position with `lastOnly`. Tidied; the
   * caller disposes the result.
   */
  logits(input: ForwardInput, options: ForwardOptions & { lastOnly?: boolean } = {}): tfc.Tensor2D {
    const tf = this.tf;
    return tf.tidy(() => {
      const h = this.hidden(input, { ...options, noGrad: true });
      if (!options.lastOnly) return this.lmHead(h);
      const T = input.inputIds.length / input.batch;
      const rows = Int32Array.from({ length: input.batch }, (_, b) => b * T + T - 1);
      return this.lmHead(tf.gather(h, tf.tensor1d(rows, 'int32')) as tfc.Tensor2D);
    });
  }

  /** Rows of logits the chunked cross-entropy computes at a time (64 MiB of them). */
  get crossEntropyChunkRows(): number {
    return crossEntropyChunkRows(this.config.vocabSize);
  }

  /**
   * The positions that carry a loss, with Hugging Face's causal shift: the logits at position t
   * predict labels[t + 1]; labels equal to IGNORE_INDEX (-100) are not trained.
   */
  private lossRows(B: number, T: number, labels: ArrayLike<number>, who: string): { rows: Int32Array; targets: Int32Array } {
    if (labels.length !== B * T) throw new RpvError(`${who}: labels has ${labels.length} values, expected ${B * T} (batch ${B} x ${T})`);
    const rows: number[] = [];
    const targets: number[] = [];
    const V = this.config.vocabSize;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t + 1 < T; t++) {
        const label = labels[b * T + t + 1];
        if (label === IGNORE_INDEX) continue;
        if (!(Number.isInteger(label) && label >= 0 && label < V)) {
          throw new RpvError(`${who}: sample ${b} position ${t + 1}: label ${label} outside the vocabulary [0, ${V})`);
        }
        rows.push(b * T + t);
        targets.push(label);
      }
    }
    return { rows: Int32Array.from(rows), targets: Int32Array.from(targets) };
  }

  /**
   * Cross-entropy over label positions (see lossRows). Returns the sum and the count so the caller
   * can normalise gradient accumulation by the total number of trained tokens. Not tidied (use
   * inside tf.variableGrads or tf.tidy). Only trained rows reach the output head, in chunks: the
   * [tokens x vocab] logits never exist.
   */
  computeLoss(input: ForwardInput, labels: ArrayLike<number>, options: ForwardOptions = {}): LossResult {
    const tf = this.tf;
    const B = input.batch;
    const T = input.inputIds.length / B;
    const { rows, targets } = this.lossRows(B, T, labels, 'computeLoss');
    const h = this.hidden(input, options);
    if (rows.length === 0) return { sum: tf.mul(tf.sum(h), 0) as tfc.Scalar, count: 0 };
    const sum = frozenCrossEntropySum(tf, gatherRows(tf, h, rows), this.weights.head, targets, this.crossEntropyChunkRows);
    return { sum, count: rows.length };
  }

  /**
   * -log p(label) at every label position, in position order (no gradient): held-out loss,
   * perplexity and focus-word loss. Chunked like computeLoss.
   */
  async labelNll(input: ForwardInput, labels: ArrayLike<number>): Promise<Float32Array> {
    const tf = this.tf;
    const B = input.batch;
    const T = input.inputIds.length / B;
    const { rows, targets } = this.lossRows(B, T, labels, 'labelNll');
    if (rows.length === 0) return new Float32Array(0);
    const out = tf.tidy(() => {
      const h = this.hidden(input, { noGrad: true });
      const picked = tf.gather(h, tf.tensor1d(rows, 'int32')) as tfc.Tensor2D;
      return this.weights.head.crossEntropy(picked, targets, { grad: false, chunkRows: this.crossEntropyChunkRows }).loss;
    });
    const nll = new Float32Array(await out.data());
    out.dispose();
    return nll;
  }

  /** log p(ids[t+1] | ids[..t]) for each row, positions 1..T-1 (no gradient). */
  async tokenLogprobs(input: ForwardInput): Promise<Float32Array[]> {
    const B = input.batch;
    const T = input.inputIds.length / B;
    const labels = Array.from(input.inputIds as ArrayLike<number>);
    const nll = await this.labelNll(input, labels);
    return Array.from({ length: B }, (_, b) => Float32Array.from(nll.subarray(b * (T - 1), (b + 1) * (T - 1)), (v) => -v));
  }

  /** Release every tensor the model holds, and unmap its mapped weight files. */
  dispose(): void {
    this.removeLora();
    if (this.projector) for (const v of projectorVariables(this.projector)) v.dispose();
    this.projector = null;
    const w = this.weights;
    w.embed.dispose();
    if (w.head !== w.embed) w.head.dispose();
    w.norm.dispose();
    for (const l of w.layers) {
      l.inputNorm.dispose();
      l.postNorm.dispose();
      for (const lin of [l.attn.q, l.attn.k, l.attn.v, l.attn.o, l.mlp.gate, l.mlp.up, l.mlp.down]) lin.dispose();
    }
    for (const f of w.mappedFiles ?? []) f.close();
  }
}
