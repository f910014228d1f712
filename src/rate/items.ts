import path from 'node:path';
import { RpvError, errorMessage } from '../util/errors.js';
import { readAnswersItems, sampleFromItem } from '../eval/samples.js';

/**
 * What raters rate: the items of one or more answers files (what `rpv eval --answers` reads, and
 * the `answers.json` that `rpv eval --run` writes), grouped by id. Each file is one system's
 * answers (`name=file` names it; otherwise the file path as given is its name), or an item holds
 * several systems' answers itself: `answers: {"<system>": "<text>", ...}` (or
 * `[{system, answer}]`) in place of `answer`. An item with two answers is rated pairwise (A, B or
 * tie) unless pairwise rating is off; any other number of answers gets a 1–10 score per answer.
 * Items with no answer at all are skipped with the reason.
 */

/** One answers file and the system whose answers it holds. */
export interface AnswersSource {
  file: string;
  /** System name; default: the file path as given. */
  system?: string;
}

export interface RateAnswer {
  system: string;
  text: string;
  /** `answers.jsonl line 3`. */
  where: string;
}

export interface RateTurn {
  speaker: string;
  text: string;
}

export type RateMode = 'scores' | 'pairwise';

export interface RateItem {
  id: string;
  role: string;
  script: string | null;
  otherRole: string | null;
  /** The other party's words (flat layout), or the whole question block (MMRole's layout). */
  question: string;
  profile: string | null;
  summary: string | null;
  history: RateTurn[];
  /** Video path relative to the media root, as the item gives it. */
  video: string | null;
  /** Image path relative to the media root (MMRole's `image`). */
  image: string | null;
  /** The shard row / export record the item comes from (`video_id`). */
  videoId: string | null;
  /** Sorted by system name: the canonical order blind labels are shuffled from. */
  answers: RateAnswer[];
  mode: RateMode;
  /** Where the item was first read. */
  where: string;
}

export interface RateItems {
  items: RateItem[];
  /** Items with no answer to rate. */
  skipped: { id: string; where: string; reason: string }[];
  /** Items read from all files (an id appears once per file that has it). */
  read: number;
  systems: string[];
}

export interface ReadRateItemsOptions {
  /** Rate two-answer items as A / B / tie (default); false: a 1–10 score per answer. */
  pairwise?: boolean;
}

/** `name=answers.jsonl` -> { system: 'name', file }; a plain path names itself. */
export function parseAnswersSource(spec: string): AnswersSource {
  const eq = spec.indexOf('=');
  if (eq > 0 && !/[\\/]/.test(spec.slice(0, eq))) return { system: spec.slice(0, eq), file: spec.slice(eq + 1) };
  return { file: spec };
}

const str = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v : null);

/** The answers of one item: `answers` (object or list) or the single answer under the file's system. */
function answersOf(obj: Record<string, unknown>, fileSystem: string, single: string | null, where: string): RateAnswer[] {
  const many = obj.answers;
  if (many === undefined || many === null) return single === null ? [] : [{ system: fileSystem, text: single, where }];
  const out: RateAnswer[] = [];
  if (Array.isArray(many)) {
    many.forEach((a, i) => {
      const entry = a as Record<string, unknown> | null;
      if (entry === null || typeof entry !== 'object' || typeof entry.system !== 'string' || entry.system === '') {
        throw new RpvError(`${where}: answers[${i}]: expected {system, answer}`);
      }
      if (typeof entry.answer !== 'string' && entry.answer !== null && entry.answer !== undefined) throw new RpvError(`${where}: answers[${i}].answer must be a string`);
      const text = str(entry.answer);
      if (text !== null) out.push({ system: entry.system, text, where });
    });
  } else if (typeof many === 'object') {
    for (const [system, text] of Object.entries(many as Record<string, unknown>)) {
      if (typeof text !== 'string' && text !== null) throw new RpvError(`${where}: answers.${system} must be a string`);
      if (str(text) !== null) out.push({ system, text: text as string, where });
    }
  } else {
    throw new RpvError(`${where}: answers must be an object {system: answer} or a list of {system, answer}`);
  }
  if (single !== null) throw new RpvError(`${where}: give 'answer' or 'answers', not both`);
  return out;
}

function historyOf(obj: Record<string, unknown>): RateTurn[] {
  if (!Array.isArray(obj.history)) return [];
  return (obj.history as Record<string, unknown>[]).map((t) => ({ speaker: String(t.speaker), text: String(t.text) }));
}

/**
 * Read and group the items of `sources`. Every bad line of every file is reported at once
 * (`rate: answers.jsonl line 3: not valid JSON: ...`), with nothing served.
 */
export async function readRateItems(sources: readonly AnswersSource[], options: ReadRateItemsOptions = {}): Promise<RateItems> {
  const { pairwise = true } = options;
  if (sources.length === 0) throw new RpvError('rate: no answers file given');
  const problems: string[] = [];
  const byId = new Map<string, RateItem>();
  const order: string[] = [];
  let read = 0;
  const systems = new Set<string>();
  for (const source of sources) {
    const fileSystem = source.system ?? path.normalize(source.file);
    const { items, problems: bad } = await readAnswersItems(source.file, 'rate');
    for (const p of bad) problems.push(`${source.file} ${p}`);
    if (items.length === 0 && bad.length === 0) problems.push(`${source.file}: no answers in the file`);
    const seenHere = new Set<string>();
    for (const { item, where: w } of items) {
      const where = `${source.file} ${w}`;
      read++;
      try {
        const obj = item !== null && typeof item === 'object' && !Array.isArray(item) ? (item as Record<string, unknown>) : null;
        // Human raters need no ground truth: a flat item may leave out `reference`.
        const input = obj && !Array.isArray(obj.conversations) && obj.reference === undefined ? { ...obj, reference: '' } : item;
        const sample = sampleFromItem(input, where, 'rate');
        const src = sample.source;
        if (seenHere.has(sample.id)) throw new RpvError(`${where}: duplicate id '${sample.id}' in ${source.file}`);
        seenHere.add(sample.id);
        const flat = !Array.isArray(src.conversations);
        const answers = answersOf(src, fileSystem, sample.answer, where);
        const question = flat ? String(src.question) : sample.question;
        let target = byId.get(sample.id);
        if (!target) {
          target = {
            id: sample.id,
            role: sample.role,
            script: sample.script,
            otherRole: sample.otherRole,
            question,
            profile: flat ? str(src.profile) : null,
            summary: flat ? str(src.summary) : null,
            history: flat ? historyOf(src) : [],
            video: str(src.video),
            image: sample.image,
            videoId: str(src.video_id),
            answers: [],
            mode: 'scores',
            where,
          };
          byId.set(sample.id, target);
          order.push(sample.id);
        } else if (target.question !== question || target.role !== sample.role) {
          throw new RpvError(`${where}: item '${sample.id}' has a different ${target.role !== sample.role ? 'role' : 'question'} than at ${target.where}`);
        }
        for (const a of answers) {
          const twin = target.answers.find((b) => b.system === a.system);
          if (twin) throw new RpvError(`${where}: item '${sample.id}' has a second answer of system '${a.system}' (the first at ${twin.where})`);
          target.answers.push(a);
          systems.add(a.system);
        }
      } catch (err) {
        if (!(err instanceof RpvError)) throw err;
        problems.push(errorMessage(err).replace(/^rate: /, ''));
      }
    }
  }
  if (problems.length === 1) throw new RpvError(`rate: ${problems[0]}`);
  if (problems.length > 1) {
    const shown = problems.slice(0, 20).map((p) => `  ${p}`);
    if (problems.length > 20) shown.push(`  ... and ${problems.length - 20} more`);
    throw new RpvError(`rate: ${problems.length} problems in the answers:\n${shown.join('\n')}`);
  }
  const items: RateItem[] = [];
  const skipped: RateItems['skipped'] = [];
  for (const id of order) {
    const item = byId.get(id)!;
    if (item.answers.length === 0) {
      skipped.push({ id, where: item.where, reason: 'no answer to rate' });
      continue;
    }
    item.answers.sort((a, b) => (a.system < b.system ? -1 : a.system > b.system ? 1 : 0));
    items.push(item);
  }
  setPairwise(items, pairwise);
  if (items.length === 0) throw new RpvError(`rate: nothing to rate: none of the ${order.length} items has an answer`);
  return { items, skipped, read, systems: [...systems].sort() };
}

/** Rate the two-answer items pairwise (A / B / tie), or give every answer a score. */
export function setPairwise(items: RateItem[], pairwise: boolean): void {
  for (const item of items) item.mode = pairwise && item.answers.length === 2 ? 'pairwise' : 'scores';
}

/** `sysA vs sysB`: how a pairwise rating names the pair (systems in sorted order). */
export function pairName(item: RateItem): string {
  return `${item.answers[0]!.system} vs ${item.answers[1]!.system}`;
}
