import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Turn } from '../../shard/schema.js';
import type { InputFormat, ParsedItem, SourceRecord } from '../record.js';
import { readJsonLinesFile as readJsonLines } from './json-input.js';

/**
 * ChatHaruhi-54K (Li et al. 2023; huggingface.co/datasets/silk-road/ChatHaruhi-54K-Role-Playing-Dialogue,
 * `Haruhi_54K_v1.jsonl`): text role-play dialogues of 32 Chinese and English characters. One JSON
 * line per dialogue: `{ agent_role, user_role, user_question, agent_response, more_dialogues }`,
 * where `more_dialogues` continues the dialogue as `Speaker:「text」` strings (`:` or full-width
 * `：`, the 「」 quotes optional). `user_role` may be narration (`旁白`, `scene`): such turns keep
 * their speaker, so they read as scene-setting and never as the role speaking; an empty
 * `user_role` becomes `user`.
 *
 * Each line becomes one text-only row (no video): role `agent_role`, one dialogue whose turns are
 * the user's question, the role's response, then `more_dialogues` in order. Rows with a missing
 * field, an empty text, or a `more_dialogues` entry without a speaker are skipped with the reason.
 */

/** The `.jsonl` files of an input: the file itself, or those under a folder (sorted). */
export async function jsonlFiles(input: string, exclude: (name: string) => boolean = () => false): Promise<string[]> {
  const stat = await fs.stat(input);
  if (stat.isFile()) return [input];
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.name.endsWith('.jsonl') && !exclude(path.relative(input, full))) out.push(full);
    }
  };
  await walk(input);
  return out;
}

/** The first parsed object of the first JSONL file of `input`, for `detect`. */
export async function firstJsonLine(input: string, exclude?: (name: string) => boolean): Promise<Record<string, unknown> | null> {
  try {
    const [file] = await jsonlFiles(input, exclude);
    if (!file) return null;
    for await (const item of readJsonLines(file)) {
      return 'value' in item && item.value && typeof item.value === 'object' ? (item.value as Record<string, unknown>) : null;
    }
  } catch {
    return null;
  }
  return null;
}

const CJK = /[\u3400-\u9fff]/;

/** `zh` when the text holds CJK characters, else `en`. */
export function guessLanguage(texts: readonly string[]): 'zh' | 'en' {
  return texts.some((t) => CJK.test(t)) ? 'zh' : 'en';
}

/** Strip one pair of the quotes ChatHaruhi wraps utterances in: 「」, 『』 or "". */
export function unquote(text: string): string {
  const t = text.trim();
  const m = /^「([\s\S]*)」$/.exec(t) ?? /^『([\s\S]*)』$/.exec(t) ?? /^"([\s\S]*)"$/.exec(t) ?? /^“([\s\S]*)”$/.exec(t);
  return (m ? m[1]! : t).trim();
}

/** One `Speaker:「text」` string as a turn; null when it has no speaker. */
export function parseSpeakerLine(entry: string): Turn | null {
  const m = /^\s*([^:：「」\n]{1,40}?)\s*[:：]\s*([\s\S]*)$/.exec(entry);
  if (!m) return null;
  return { speaker: m[1]!.trim(), text: unquote(m[2]!) };
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/** One ChatHaruhi line as a record, or the reason it cannot be one. */
export function chatharuhiRecord(value: unknown, source: string, line: number): SourceRecord | string {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return 'wrong type: expected a JSON object';
  const row = value as Record<string, unknown>;
  for (const key of ['agent_role', 'user_question', 'agent_response']) {
    if (row[key] === undefined || row[key] === null) return `missing field: "${key}"`;
    if (str(row[key]) === null) return `wrong type: "${key}" must be a string`;
  }
  const role = str(row.agent_role)!.trim();
  if (!role) return 'empty field: "agent_role" is empty';
  const userRole = str(row.user_role)?.trim() || 'user';
  const turns: Turn[] = [
    { speaker: userRole, text: unquote(str(row.user_question)!) },
    { speaker: role, text: unquote(str(row.agent_response)!) },
  ];
  const more = row.more_dialogues ?? [];
  if (!Array.isArray(more)) return 'wrong type: "more_dialogues" must be an array of "Speaker:「text」" strings';
  for (let i = 0; i < more.length; i++) {
    const entry = more[i];
    const turn = typeof entry === 'string' ? parseSpeakerLine(entry) : null;
    if (!turn) return `wrong type: "more_dialogues" ${i + 1} must be "Speaker:「text」", found ${JSON.stringify(entry)?.slice(0, 40)}`;
    turns.push(turn);
  }
  const empty = turns.findIndex((t) => t.text === '');
  if (empty >= 0) return `empty turn: turn ${empty + 1}: empty text`;
  return {
    file: source,
    line,
    id: `${source.replace(/\.jsonl$/, '')}:${line}`,
    video: null,
    role,
    language: guessLanguage(turns.map((t) => t.text)),
    platform: 'chatharuhi',
    profile: null,
    summary: null,
    dialogues: [{ id: `${line}`, turns }],
  };
}

export const chatharuhiFormat: InputFormat = {
  name: 'chatharuhi',
  description: 'ChatHaruhi-54K: JSON lines of {agent_role, user_role, user_question, agent_response, more_dialogues}',
  async detect(input: string): Promise<boolean> {
    const first = await firstJsonLine(input);
    return !!first && 'agent_role' in first && 'user_question' in first && 'agent_response' in first;
  },
  async *read(input: string, options: { root: string }): AsyncGenerator<ParsedItem> {
    for (const file of await jsonlFiles(input)) {
      const source = path.relative(options.root, file) || path.basename(file);
      for await (const item of readJsonLines(file)) {
        if ('error' in item) {
          yield { kind: 'skip', skip: { source, line: item.line, reason: item.error } };
          continue;
        }
        const record = chatharuhiRecord(item.value, source, item.line);
        if (typeof record === 'string') yield { kind: 'skip', skip: { source, line: item.line, reason: record } };
        else yield { kind: 'record', record };
      }
    }
  },
};
