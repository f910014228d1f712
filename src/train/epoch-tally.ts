/**
 * What one pass of the loader gave the trainer: samples trained, held out and skipped (by
 * reason). An epoch that trains nothing would repeat forever, so the trainer stops on the first
 * full epoch without a trained sample and says why, with these counts.
 */
import { RpvError } from '../util/errors.js';
import type { SkipReason } from './prompt.js';

/** The counts of one micro-batch (a loader batch after rendering), as the tally takes them. */
export interface BatchCounts {
  /** Samples that will be trained. */
  trained: number;
  heldOut: number;
  skipped: Partial<Record<SkipReason, number>>;
  /** Token count of the shortest `too-long` sample of the batch; null when none. */
  shortestTooLong: number | null;
}

/** What the message needs from the recipe. */
export interface TallyLimits {
  /** `prompt.max_tokens`. */
  maxTokens: number;
  /** `data.heldout_fraction`. */
  heldoutFraction: number;
}

export class EpochTally {
  trained = 0;
  heldOut = 0;
  skipped: Partial<Record<SkipReason, number>> = {};
  shortestTooLong: number | null = null;

  /**
   * @param full false when the pass started mid-epoch (a resumed run): an empty remainder of an
   *   epoch proves nothing about the next one.
   */
  constructor(readonly full: boolean) {}

  add(batch: BatchCounts): void {
    this.trained += batch.trained;
    this.heldOut += batch.heldOut;
    for (const [reason, n] of Object.entries(batch.skipped) as [SkipReason, number][]) this.skipped[reason] = (this.skipped[reason] ?? 0) + n;
    if (batch.shortestTooLong !== null) this.shortestTooLong = Math.min(this.shortestTooLong ?? Infinity, batch.shortestTooLong);
  }

  /** Throws when this was a whole epoch and none of its samples could be trained. */
  check(limits: TallyLimits): void {
    if (this.full && this.trained === 0) throw new RpvError(untrainableEpochMessage(this, limits));
  }
}

const phrases: Record<SkipReason, (limits: TallyLimits, tally: EpochTally) => string> = {
  'too-long': (limits, tally) =>
    `longer than prompt.max_tokens (${limits.maxTokens}${tally.shortestTooLong !== null ? `; the shortest has ${tally.shortestTooLong} tokens` : ''})`,
  'no-role-turn': () => 'without a turn of their role (nothing to train on)',
};

/**
 * `train: no sample of an epoch could be trained: all 27 training samples are longer than
 * prompt.max_tokens (20; the shortest has 61 tokens); 9 more are held out`
 */
export function untrainableEpochMessage(tally: EpochTally, limits: TallyLimits): string {
  const head = 'train: no sample of an epoch could be trained: ';
  const reasons = (Object.entries(tally.skipped) as [SkipReason, number][]).filter(([, n]) => n > 0);
  const training = reasons.reduce((a, [, n]) => a + n, 0);
  if (training === 0) {
    return `${head}all ${tally.heldOut} samples of the epoch are held out (data.heldout_fraction ${limits.heldoutFraction})`;
  }
  const plural = (n: number) => (n === 1 ? 'sample' : 'samples');
  const held = tally.heldOut > 0 ? `; ${tally.heldOut} more ${tally.heldOut === 1 ? 'is' : 'are'} held out` : '';
  if (reasons.length === 1) {
    const [reason] = reasons[0]!;
    const all = training === 1 ? 'the only training sample is' : `all ${training} training samples are`;
    return `${head}${all} ${phrases[reason](limits, tally)}${held}`;
  }
  const parts = reasons.map(([reason, n]) => `${n} ${n === 1 ? 'is' : 'are'} ${phrases[reason](limits, tally)}`);
  return `${head}of ${training} training ${plural(training)}, ${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}${held}`;
}
