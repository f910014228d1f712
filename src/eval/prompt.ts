import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import type { JudgeOrder } from './aggregate.js';
import type { ChatContentPart, JudgeMessage } from './client.js';
import type { JudgeMetric, MetricSet } from './metrics.js';
import type { EvalSample } from './samples.js';

/**
 * The judge prompt of MMRole-Eval's protocol: for one metric, the judge sees the question, Model
 * A's response, Model B's response and the task instruction, and writes a brief comparison ending
 * in `[Scores]: (a, b)` on 1–10. In the forward order Model A is the evaluated answer and Model B
 * the ground truth; `swapped` shows them the other way round (to measure and cancel position bias).
 * The layout and sentences follow MMRole's `RM_review.py`, so an `mmrole` run asks what the
 * published reviews were asked.
 */

export const JUDGE_SYSTEM_PROMPT =
  'You are an objective and precise evaluator, specializing in rigorously assessing the role-playing and multimodal understanding abilities of various models.';

/** MMRole's marker of invented roles, which have no source work. */
const HYPOTHETICAL = 'Hypothetical Characters';
const CURIOUS_HUMAN = 'a curious human';

/** The task instruction both models were given, as MMRole phrases it. */
export function taskInstruction(sample: EvalSample, medium: 'image' | 'video'): string {
  const { role, script } = sample;
  const other = sample.otherRole ?? CURIOUS_HUMAN;
  const describe = (name: string) =>
    !script ? name : script === HYPOTHETICAL ? `${name}, a person who is one of the Hypothetical Characters,` : `${name} from ${script}`;
  const roleScript = describe(role);
  const otherScript = other === CURIOUS_HUMAN ? other : describe(other);
  return `The task instruction of the two models is to directly role-play as ${roleScript} and talk with ${otherScript} about the given ${medium} using the distinctive tone, manner and vocabulary of ${role}.`;
}

/** How aspect questions name the other party (`the curious human`, or the character). */
export function otherPartyName(sample: Pick<EvalSample, 'otherRole'>): string {
  const other = sample.otherRole ?? CURIOUS_HUMAN;
  return other === CURIOUS_HUMAN ? 'the curious human' : other;
}

/** The user message for one sample, metric and order (text only). */
export function judgePromptText(sample: EvalSample, metric: JudgeMetric, set: MetricSet, order: JudgeOrder = 'forward'): string {
  if (sample.answer === null) throw new RpvError(`eval: sample '${sample.id}' has no answer to judge`);
  const [a, b] = order === 'forward' ? [sample.answer, sample.reference] : [sample.reference, sample.answer];
  const aspect = metric.aspect({ role: sample.role, otherParty: otherPartyName(sample) });
  return (
    `## **[Question Start]**\n\n${sample.question}\n\n## **[Question End]**\n\n\n` +
    `## **[Model A's Response Start]**\n\n${a}\n\n## **[Model A's Response End]**\n\n\n` +
    `## **[Model B's Response Start]**\n\n${b}\n\n## **[Model B's Response End]**\n\n\n` +
    '## **[Instruction]**\n\n' +
    `${taskInstruction(sample, set.medium)}\n\n` +
    "Please evaluate the following aspect of each model's response:\n" +
    `${aspect}\n\n` +
    'Please provide a brief qualitative evaluation for the relative performance of the two models, followed by paired quantitative scores from 1 to 10, where 1 indicates poor performance and 10 indicates excellent performance.\n\n' +
    'The output should be in the following format:\n' +
    '{Qualitative Evaluation}, [Scores]: ({the score of Model A}, {the score of Model B})\n\n' +
    'Please ensure that your evaluations are unbiased and that the order in which the responses were presented does not affect your judgment.'
  );
}

/** Sent after a review without a readable score pair, before asking again. */
export function scoreReminder(reason: string): string {
  return (
    `Your evaluation could not be scored (${reason}). Reply again with a brief qualitative evaluation ` +
    'that ends with exactly one line in this format, both scores integers from 1 to 10:\n' +
    '[Scores]: (<the score of Model A>, <the score of Model B>)'
  );
}

const IMAGE_TYPES: Record<string, string> = { '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.webp': 'image/webp', '.gif': 'image/gif' };

/**
 * The judge's messages. With `imageDir`, a sample's image is attached as a data URL (OpenAI's
 * multimodal message format), as MMRole's judge sees the image.
 */
export async function judgeMessages(
  sample: EvalSample,
  metric: JudgeMetric,
  set: MetricSet,
  order: JudgeOrder,
  options: { imageDir?: string | null } = {},
): Promise<JudgeMessage[]> {
  const text = judgePromptText(sample, metric, set, order);
  let content: string | ChatContentPart[] = text;
  if (options.imageDir && sample.image) {
    const file = path.resolve(options.imageDir, sample.image);
    const type = IMAGE_TYPES[path.extname(file).toLowerCase()];
    if (!type) throw new RpvError(`eval: sample '${sample.id}': image ${sample.image}: unsupported type (expected jpg, png, webp or gif)`);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch {
      throw new RpvError(`eval: sample '${sample.id}': image ${file} not found (under --image-dir ${options.imageDir})`);
    }
    content = [
      { type: 'image_url', image_url: { url: `data:${type};base64,${bytes.toString('base64')}` } },
      { type: 'text', text },
    ];
  }
  return [
    { role: 'system', content: JUDGE_SYSTEM_PROMPT },
    { role: 'user', content },
  ];
}
