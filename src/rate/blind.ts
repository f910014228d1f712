import { Rng } from '../util/random.js';
import type { RateItem } from './items.js';

/**
 * Blind presentation. A rater never sees which system wrote an answer: answers are shown as
 * A, B, C... in an order shuffled per rater and item, and each rater meets the items in an order
 * shuffled per rater. Both are pure functions of the session's seed, the rater and the item, so a
 * rater who comes back sees the same order, and the server maps a label back to its system
 * without storing anything.
 */

export const ANSWER_LABELS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A rater's order of the items: a seeded shuffle of `ids`. */
export function raterItemOrder(ids: readonly string[], rater: string, seed: string | number): string[] {
  const index = Uint32Array.from(ids, (_, i) => i);
  Rng.fromKey('rate-items', seed, rater).shuffle(index);
  return Array.from(index, (i) => ids[i]!);
}

/** `order[label]` = index into `item.answers` of the answer shown under that label. */
export function answerOrder(item: RateItem, rater: string, seed: string | number): number[] {
  const order = Uint32Array.from(item.answers, (_, i) => i);
  Rng.fromKey('rate-answers', seed, rater, item.id).shuffle(order);
  return Array.from(order);
}

/** The labels shown to `rater` for `item`, with the system each stands for. */
export function blindLabels(item: RateItem, rater: string, seed: string | number): { label: string; system: string; text: string }[] {
  if (item.answers.length > ANSWER_LABELS.length) throw new Error(`item ${item.id}: more than ${ANSWER_LABELS.length} answers`);
  return answerOrder(item, rater, seed).map((i, k) => ({ label: ANSWER_LABELS[k]!, system: item.answers[i]!.system, text: item.answers[i]!.text }));
}
