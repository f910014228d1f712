/**
 * Held-out scoring: the one place that turns held-out samples into loss, perplexity and the loss
 * on the focus words. The trainer's evaluation (`Evaluator`) and `rpv eval` (src/eval/heldout.ts)
 * both render with `heldOutPrepared` and score with `scoreHeldOut`, so the perplexity `rpv eval`
 * prints for a checkpoint is the one training logged for it.
 */
import type { Sample } from '../loader/collate.js';
import type { CausalLM } from '../model/decoder.js';
import { createLoader } from '../loader/index.js';
import { ABORTED, untilAborted } from '../util/abort.js';
import { targetLosses } from './bridge.js';
import { isHeldOut } from './dataset.js';
import type { EvalMetric, HeldOutScore } from './metrics.js';
import { packBatch, type PackedBatch, type PreparedSample } from './pack.js';
import { prepared, renderSample } from './render.js';
import type { SkipReason } from './prompt.js';
import type { Recipe } from './recipe.js';
import type { DatasetSummary } from './dataset.js';
import type { PromptTokenizer } from './prompt.js';
import type { TrainingSession } from './session.js';

export type { HeldOutScore } from './metrics.js';

/** A held-out sample rendered as training renders it (profile, loss mask, frames), or why it cannot be scored. */
export function heldOutPrepared(recipe: Recipe, tok: PromptTokenizer, dataset: DatasetSummary, s: Sample, tokensPerFrame: number, featureDim: number): PreparedSample | { skip: SkipReason } {
  // Held-out videos are never in the profile pools, so their profile comes from training videos.
  const r = renderSample(recipe, tok, dataset, s, tokensPerFrame);
  if ('skip' in r) return { skip: r.skip };
  return prepared(s, r, recipe.data.use_video, tokensPerFrame * featureDim);
}

/** Scores `samples` in batches of `batchSize` (in order); `onBatch` is called with each batch's sample count. */
export async function scoreHeldOut(model: CausalLM, samples: PreparedSample[], batchSize: number, featureDim: number, onBatch?: (n: number) => void): Promise<HeldOutScore> {
  const batches: PackedBatch[] = [];
  for (let i = 0; i < samples.length; i += batchSize) batches.push(packBatch(samples.slice(i, i + batchSize), featureDim));
  return scoreBatches(model, batches, onBatch);
}

async function scoreBatches(model: CausalLM, batches: PackedBatch[], onBatch?: (n: number) => void): Promise<HeldOutScore> {
  return scoreFromSums(await sumBatches(model, batches, onBatch));
}

/** [nll sum, tokens, focus nll sum, focus tokens, samples]: what ranks add up. */
type Sums = [number, number, number, number, number];

function scoreFromSums([sum, count, focusSum, focusCount, samples]: Sums): HeldOutScore {
  const loss = count > 0 ? sum / count : NaN;
  return { loss, perplexity: Math.exp(loss), tokens: count, samples, focus_loss: focusCount > 0 ? focusSum / focusCount : null, focus_tokens: focusCount };
}

async function sumBatches(model: CausalLM, batches: PackedBatch[], onBatch?: (n: number) => void): Promise<Sums> {
  let sum = 0;
  let count = 0;
  let focusSum = 0;
  let focusCount = 0;
  let samples = 0;
  for (const batch of batches) {
    const { nll, focus } = await targetLosses(model, batch);
    for (let i = 0; i < nll.length; i++) {
      sum += nll[i]!;
      if (focus[i]) {
        focusSum += nll[i]!;
        focusCount += 1;
      }
    }
    count += nll.length;
    samples += batch.batch;
    onBatch?.(batch.batch);
  }
  return [sum, count, focusSum, focusCount, samples];
}

/** A data-parallel job's split of the held-out batches: this rank's share, and the sum over ranks. */
export interface EvalShare {
  rank: number;
  worldSize: number;
  sum: (values: Float64Array) => Promise<void>;
}

/** Held-out evaluation: samples collected once (shuffle off), then loss, perplexity, focus-word loss. */
export class Evaluator {
  private batches: PackedBatch[] | null = null;

  /** `share`: on several ranks, each scores batches rank, rank + ranks, ... and the sums are added. */
  constructor(private readonly session: TrainingSession, private readonly share: EvalShare | null = null) {}

  /** Null when `signal` aborts while the held-out samples are being read. */
  private async collect(signal: AbortSignal | undefined): Promise<PackedBatch[] | null> {
    const { recipe } = this.session;
    const size = recipe.data.batch_size;
    const limit = recipe.eval.max_batches === null ? Infinity : recipe.eval.max_batches * size;
    const samples: PreparedSample[] = [];
    const loader = createLoader<PreparedSample[]>({
      source: recipe.data.shards,
      batchSize: 16,
      seed: recipe.seed,
      shuffle: false,
      // Every held-out sample on every rank; a job's ranks split the batches below.
      rank: 0,
      worldSize: 1,
      workers: recipe.data.workers,
      prefetchBytes: recipe.data.prefetch_bytes,
      verify: recipe.data.verify,
      collate: (batch) => {
        const out: PreparedSample[] = [];
        for (const s of batch) {
          if (s.padding || !isHeldOut(s.video_id, recipe.data.heldout_fraction, recipe.seed)) continue;
          const r = heldOutPrepared(recipe, this.session.tokenizer, this.session.dataset, s, this.session.tokensPerFrame, this.session.featureDim);
          if (!('skip' in r)) out.push(r);
        }
        return out;
      },
    });
    const it = loader[Symbol.asyncIterator]();
    for (;;) {
      const pending = it.next();
      const r = await untilAborted(pending, signal);
      if (r === ABORTED) {
        // As in the training loop: the pending read is abandoned, the workers stopped.
        pending.catch(() => undefined);
        loader.close().catch(() => undefined);
        return null;
      }
      if (r.done) break;
      samples.push(...r.value);
      if (samples.length >= limit) {
        await it.return?.();
        break;
      }
    }
    const kept = samples.slice(0, limit === Infinity ? undefined : limit);
    const out: PackedBatch[] = [];
    for (let i = 0; i < kept.length; i += size) out.push(packBatch(kept.slice(i, i + size), this.session.featureDim));
    return out;
  }

  /** Null when `signal` aborts before the held-out samples are read. */
  async run(step: number, signal?: AbortSignal): Promise<EvalMetric | null> {
    this.batches ??= await this.collect(signal);
    if (!this.batches) return null;
    let score: HeldOutScore;
    if (this.share) {
      const { rank, worldSize } = this.share;
      const sums = Float64Array.from(await sumBatches(this.session.model, this.batches.filter((_, i) => i % worldSize === rank)));
      await this.share.sum(sums);
      score = scoreFromSums([...sums] as Sums);
    } else score = await scoreBatches(this.session.model, this.batches);
    return { type: 'eval', step, ...score, time: new Date().toISOString() };
  }

  dispose(): void {
    this.batches = null;
  }
}
