import { promises as fs } from 'node:fs';
import { RpvError, errorMessage } from '../util/errors.js';

/**
 * One answer to judge: the question put to the evaluated model, its answer (Model A) and the
 * ground truth (Model B), with what the judge needs to know about the role.
 *
 * Answers files (`rpv eval --answers <file>`) come in two layouts, told apart per item:
 *
 * - MMRole's answers layout (what MMRole-Eval's `in-test_answers/` hold, and what rpv's review
 *   files keep): `{ id, role, script, other_role, image?, system?, conversations: [
 *   { from: 'user', value: <question> }, { from: 'assistant', value: <ground truth>, answer: <evaluated> } ] }`.
 * - rpv's flat layout: `{ id, role, question, reference, answer, script?, other_role?, profile?,
 *   summary?, history?: [{ speaker, text }], video?, image? }`.
 *
 * A JSON array, or JSON lines (`.jsonl`). Items whose answer is missing or empty are kept and
 * reported as unjudged, as MMRole-Eval does.
 */
export interface EvalSample {
  id: string;
  role: string;
  /** The work the role comes from (`The Avengers`); MMRole writes `Hypothetical Characters` for invented roles. */
  script: string | null;
  /** Who the role talks to: `a curious human` (MMRole's default) or another character. */
  otherRole: string | null;
  /** The full text the evaluated model was asked (profile, context and the other party's words). */
  question: string;
  /** Ground-truth answer: Model B in the forward order. */
  reference: string;
  /** The evaluated model's answer: Model A in the forward order; null when it gave none. */
  answer: string | null;
  /** Image the conversation is about (relative path), when any: sent to a multimodal judge on request. */
  image: string | null;
  /** The item as read, kept so review files repeat the input's fields. */
  source: Record<string, unknown>;
}

/** One item of an answers file, with where it is (`line 3` of a JSONL file, `item 2` of an array). */
export interface AnswersFileItem {
  item: unknown;
  where: string;
}

/**
 * The items of an answers file (JSON array or JSON lines), and each JSON line that does not
 * parse as `line N: not valid JSON: ...`. A file that is not readable, or a JSON array that does not
 * parse, throws (`command` starts the message).
 */
export async function readAnswersItems(file: string, command = 'eval'): Promise<{ items: AnswersFileItem[]; problems: string[] }> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`${command}: cannot read answers file ${file}: ${errorMessage(err)}`);
  }
  const items: AnswersFileItem[] = [];
  const problems: string[] = [];
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    let data: unknown[];
    try {
      data = JSON.parse(text) as unknown[];
    } catch (err) {
      throw new RpvError(`${command}: ${file}: not valid JSON: ${errorMessage(err)}`);
    }
    data.forEach((item, i) => items.push({ item, where: `item ${i + 1}` }));
  } else {
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        items.push({ item: JSON.parse(line), where: `line ${i + 1}` });
      } catch (err) {
        problems.push(`line ${i + 1}: not valid JSON: ${errorMessage(err)}`);
      }
    });
  }
  return { items, problems };
}

/** Read an answers file (JSON array or JSON lines) into samples; bad items are errors naming the item. */
export async function readAnswersFile(file: string): Promise<EvalSample[]> {
  const { items, problems } = await readAnswersItems(file);
  if (problems.length > 0) throw new RpvError(`eval: ${file} ${problems[0]}`);
  if (items.length === 0) throw new RpvError(`eval: ${file}: no answers in the file`);
  const samples = items.map(({ item, where }) => sampleFromItem(item, `${file} ${where}`));
  const seen = new Set<string>();
  for (const s of samples) {
    if (seen.has(s.id)) throw new RpvError(`eval: ${file}: duplicate id '${s.id}'`);
    seen.add(s.id);
  }
  return samples;
}

/** One item of either layout as a sample; `where` names it in errors, `command` starts them. */
export function sampleFromItem(item: unknown, where: string, command = 'eval'): EvalSample {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw new RpvError(`${command}: ${where}: expected an object`);
  }
  const obj = item as Record<string, unknown>;
  const str = (key: string, required: boolean): string | null => {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (required) throw new RpvError(`${command}: ${where}: missing field '${key}'`);
      return null;
    }
    if (typeof v !== 'string' && typeof v !== 'number') throw new RpvError(`${command}: ${where}: field '${key}' must be a string`);
    return String(v);
  };
  const id = str('id', true)!;
  const role = str('role', true)!;
  const base = { id, role, script: str('script', false), otherRole: str('other_role', false), image: str('image', false), source: obj };
  if (Array.isArray(obj.conversations)) {
    const turns = obj.conversations as Record<string, unknown>[];
    const question = turns[0]?.value;
    const reference = turns[1]?.value;
    if (typeof question !== 'string') throw new RpvError(`${command}: ${where}: conversations[0].value (the question) must be a string`);
    if (typeof reference !== 'string') throw new RpvError(`${command}: ${where}: conversations[1].value (the ground truth) must be a string`);
    const answer = turns[1]?.answer;
    return { ...base, question, reference, answer: typeof answer === 'string' && answer.trim() !== '' ? answer : null };
  }
  const reference = str('reference', true)!;
  const answer = str('answer', false);
  return {
    ...base,
    question: flatQuestion(obj, role, base.otherRole, where, command),
    reference,
    answer: answer !== null && answer.trim() !== '' ? answer : null,
  };
}

/** The question block of a flat item: profile, video summary, earlier turns, then the question. */
function flatQuestion(obj: Record<string, unknown>, role: string, otherRole: string | null, where: string, command: string): string {
  const question = obj.question;
  if (typeof question !== 'string' || question.trim() === '') throw new RpvError(`${command}: ${where}: missing field 'question'`);
  const parts: string[] = [];
  if (typeof obj.profile === 'string' && obj.profile.trim()) parts.push(`The profile of ${role}:\n${obj.profile.trim()}`);
  if (typeof obj.summary === 'string' && obj.summary.trim()) parts.push(`What the video shows:\n${obj.summary.trim()}`);
  if (Array.isArray(obj.history) && obj.history.length > 0) {
    const lines = (obj.history as Record<string, unknown>[]).map((t, i) => {
      if (typeof t?.speaker !== 'string' || typeof t?.text !== 'string') {
        throw new RpvError(`${command}: ${where}: history turn ${i + 1}: expected {speaker, text}`);
      }
      return `${t.speaker}: ${t.text}`;
    });
    parts.push(`The conversation so far:\n${lines.join('\n')}`);
  }
  parts.push(`${otherRole && otherRole !== 'a curious human' ? otherRole : 'The other party'} says:\n${question.trim()}`);
  return parts.join('\n\n');
}
