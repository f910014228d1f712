/**
 * The training data as the loop sees it: micro-batches of rendered samples from the loader, epoch
 * after epoch, each epoch's counts checked (src/train/epoch-tally.ts), a wait for data that ends
 * when the run is aborted.
 */
import { createLoader, type Loader } from '../loader/index.js';
import type { LoaderState } from '../loader/state.js';
import { RpvError } from '../util/errors.js';
import { ABORTED, untilAborted } from '../util/abort.js';
import { EpochTally } from './epoch-tally.js';
import { packBatch, type PackedBatch, type PreparedSample } from './pack.js';
import { arrangeStep, arrangementOf } from './packing.js';
import type { SkipReason } from './prompt.js';
import type { TrainingSession } from './session.js';

/** What the loader's collate hands the trainer: samples rendered, frames copied. */
export interface MicroBatch {
  epoch: number;
  index: number;
  samples: PreparedSample[];
  /** Held-out samples, not trained. */
  heldOut: number;
  skipped: Partial<Record<SkipReason, number>>;
  /** Token count of the shortest sample skipped as too long; null when none. */
  shortestTooLong: number | null;
  /** Samples repeated only to even out ranks. */
  padding: number;
}

export class MicroBatches {
  private readonly loader: Loader<MicroBatch>;
  private iterator: AsyncIterator<MicroBatch>;
  private tally: EpochTally;
  private emptyEpochs = 0;
  /** A wait for data that the run's abort ended early; its next() may settle later. */
  private abandoned: Promise<MicroBatch> | null = null;

  /** `resume`: the loader position saved in a checkpoint. */
  constructor(private readonly session: TrainingSession, resume: LoaderState | null) {
    const { recipe } = session;
    this.loader = createLoader<MicroBatch>({
      source: recipe.data.shards,
      batchSize: recipe.data.batch_size,
      // The global order on every rank: ranks split each step (src/train/data-parallel.ts).
      rank: 0,
      worldSize: 1,
      seed: recipe.seed,
      shuffle: recipe.data.shuffle,
      workers: recipe.data.workers,
      prefetchBytes: recipe.data.prefetch_bytes,
      verify: recipe.data.verify,
      dropLast: false,
      resume: resume ?? undefined,
      collate: (samples, ctx) => {
        const mb: MicroBatch = { epoch: ctx.epoch, index: ctx.batchIndex, samples: [], heldOut: 0, skipped: {}, shortestTooLong: null, padding: 0 };
        for (const s of samples) {
          if (s.padding) {
            mb.padding += 1;
            continue;
          }
          const r = session.prepare(s);
          if (r.sample) mb.samples.push(r.sample);
          else if (r.skip === 'held-out') mb.heldOut += 1;
          else if (r.skip) {
            mb.skipped[r.skip] = (mb.skipped[r.skip] ?? 0) + 1;
            if (r.tokens !== undefined) mb.shortestTooLong = Math.min(mb.shortestTooLong ?? Infinity, r.tokens);
          }
        }
        return mb;
      },
    });
    this.iterator = this.loader[Symbol.asyncIterator]();
    // A pass that starts mid-epoch (a resumed run) is not a whole epoch.
    this.tally = new EpochTally(this.loader.state().batches === 0);
  }

  /** The loader's position, for a checkpoint. */
  state(): LoaderState {
    return this.loader.state();
  }

  /**
   * The packed micro-batches of one optimizer step: `count` loader batches (those without a
   * trainable sample are passed over), each one micro-batch, or with `data.packing` /
   * `data.group_by_length` their samples arranged together (src/train/packing.ts); their skips
   * added to `skipped`. Null when `signal` aborts the wait for data. `waitMs`: time spent waiting
   * for the loader.
   */
  async gather(count: number, skipped: Record<string, number>, signal: AbortSignal | undefined): Promise<{ micro: PackedBatch[]; waitMs: number } | null> {
    let waitMs = 0;
    const batches: PreparedSample[][] = [];
    while (batches.length < count) {
      const t0 = performance.now();
      const mb = await this.nextUnlessAborted(signal);
      waitMs += performance.now() - t0;
      if (!mb) return null;
      for (const [reason, n] of Object.entries(mb.skipped)) skipped[reason] = (skipped[reason] ?? 0) + n;
      if (mb.samples.length === 0) continue;
      batches.push(mb.samples);
    }
    const { recipe, featureDim } = this.session;
    const mode = arrangementOf(recipe.data);
    const micro =
      mode === 'padded'
        ? batches.map((samples) => packBatch(samples, featureDim))
        : arrangeStep(batches.flat(), mode, { batchSize: recipe.data.batch_size, maxTokens: recipe.prompt.max_tokens, featureDim });
    return { micro, waitMs };
  }

  private async next(): Promise<MicroBatch> {
    const { recipe } = this.session;
    for (;;) {
      const r = await this.iterator.next();
      if (!r.done) {
        this.emptyEpochs = 0;
        this.tally.add({ ...r.value, trained: r.value.samples.length });
        return r.value;
      }
      // End of an epoch: one without a trainable sample would repeat forever.
      this.tally.check({ maxTokens: recipe.prompt.max_tokens, heldoutFraction: recipe.data.heldout_fraction });
      if (++this.emptyEpochs > 1) throw new RpvError('train: the loader yielded no batch for a whole epoch');
      this.tally = new EpochTally(true);
      this.iterator = this.loader[Symbol.asyncIterator]();
    }
  }

  private async nextUnlessAborted(signal: AbortSignal | undefined): Promise<MicroBatch | null> {
    if (signal?.aborted) return null;
    const pending = this.next();
    const result = await untilAborted(pending, signal);
    if (result !== ABORTED) return result;
    this.abandoned = pending;
    return null;
  }

  async close(): Promise<void> {
    // A generator's return() waits for its pending next(): after an abandoned wait, stop the
    // loader's workers instead (in the background: a stalled read must not hold the caller).
    if (this.abandoned) {
      this.abandoned.catch(() => undefined);
      this.loader.close().catch(() => undefined);
    } else await this.iterator.return?.();
  }
}
