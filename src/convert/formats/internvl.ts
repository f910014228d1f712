/**
 * InternVL / LLaVA chat JSONL (the format InternVL2.5, the paper's base model, fine-tunes on):
 * `{id, video, conversations: [{from: "human"|"gpt", value}], role?, system?}`, `<video>` marking
 * where the video goes. Also reads `.json` arrays of the same records (LLaVA's usual layout).
 *
 * Mapping to the shard row: records sharing a `video` become one row whose `video_id` is the path
 * without its extension (`videos/clip-01`); each record is one dialogue with the record's `id`.
 * `from: human|user` turns are spoken by `user`, `gpt|assistant` turns by the role (`role`, else
 * `--default-role`; a record with neither is skipped); `system` (field or `from: system` turn) becomes the profile. `<video>`/`<image>`
 * placeholders are removed from the text (the video is row-level: the loader places its tokens
 * before the dialogue, InternVL's usual position).
 */
import { promises as fs } from 'node:fs';
import type { Turn } from '../../shard/schema.js';
import type { InputFormat, ReadOptions, SourceRecord } from '../record.js';
import { RecordProblem, describe, firstRecord, isObject, listFiles, optionalString, requiredString, stripMediaPlaceholders, videoIdFromPath } from './json-input.js';
import { parseJsonItems } from './rpv.js';

/** Input files: the file itself, or the `.jsonl`/`.json` files of a folder. */
export async function chatInputFiles(input: string): Promise<string[]> {
  const stat = await fs.stat(input);
  return stat.isFile() ? [input] : listFiles(input, ['.jsonl', '.json']);
}

const USER = new Set(['human', 'user']);
const ASSISTANT = new Set(['gpt', 'assistant', 'model']);

/** Chat turns from `[{<speakerKey>, <textKey>}]`, with system messages returned apart. */
export function parseChatTurns(
  value: unknown,
  field: string,
  keys: { speaker: string; text: string },
  role: string,
): { turns: Turn[]; system: string | null } {
  if (value === undefined) throw new RecordProblem(`missing field: "${field}"`);
  if (!Array.isArray(value)) throw new RecordProblem(`wrong type: "${field}" must be an array, found ${describe(value)}`);
  const turns: Turn[] = [];
  let system: string | null = null;
  value.forEach((message, i) => {
    const at = `${field} ${i + 1}: `;
    if (!isObject(message)) throw new RecordProblem(`wrong type: ${at}expected an object, found ${describe(message)}`);
    const from = message[keys.speaker];
    const text = message[keys.text];
    if (from === undefined) throw new RecordProblem(`missing field: ${at}"${keys.speaker}"`);
    if (typeof from !== 'string') throw new RecordProblem(`wrong type: ${at}"${keys.speaker}" must be a string, found ${describe(from)}`);
    if (text === undefined) throw new RecordProblem(`missing field: ${at}"${keys.text}"`);
    if (typeof text !== 'string') throw new RecordProblem(`wrong type: ${at}"${keys.text}" must be a string, found ${describe(text)}`);
    const clean = stripMediaPlaceholders(text);
    if (from === 'system') {
      system = clean || null;
      return;
    }
    let speaker: string;
    if (USER.has(from)) speaker = 'user';
    else if (ASSISTANT.has(from)) speaker = role;
    else throw new RecordProblem(`wrong type: ${at}"${keys.speaker}" must be one of human, gpt, user, assistant, system; found ${JSON.stringify(from)}`);
    if (clean === '') throw new RecordProblem(`empty turn: turn ${turns.length + 1}: empty text`);
    turns.push({ speaker, text: clean });
  });
  if (turns.length === 0) throw new RecordProblem(`empty dialogue: "${field}" has no user or assistant turns`);
  return { turns, system };
}

/**
 * The record's `role` (who speaks the assistant turns), else `defaultRole`; neither is a problem:
 * a role named "assistant" by default would train "You are assistant" without a word.
 */
export function recordRole(value: Record<string, unknown>, defaultRole: string | null | undefined): string | null {
  const role = optionalString(value, 'role');
  if (role !== null && role.trim() !== '') return role;
  return defaultRole || null;
}

/** The reason of a record whose role is unknown (checked after its other fields, so they speak first). */
export function missingRole(): RecordProblem {
  return new RecordProblem('missing field: "role" (the character who speaks the assistant turns); add it to the record or pass --default-role <name>');
}

export function parseInternvlRecord(value: unknown, file: string, line: number, defaultRole?: string | null): SourceRecord {
  if (!isObject(value)) throw new RecordProblem(`wrong type: expected a JSON object, found ${describe(value)}`);
  const id = requiredString(value, 'id', '', { number: true });
  const video = value.video === undefined || value.video === null ? null : requiredString(value, 'video');
  const named = recordRole(value, defaultRole);
  const { turns, system } = parseChatTurns(value.conversations, 'conversations', { speaker: 'from', text: 'value' }, named ?? 'assistant');
  if (named === null) throw missingRole();
  const role = named;
  return {
    file,
    line,
    id: video ? videoIdFromPath(video) : id,
    video,
    role,
    language: optionalString(value, 'language'),
    platform: optionalString(value, 'platform'),
    profile: optionalString(value, 'system') ?? system,
    summary: optionalString(value, 'summary'),
    dialogues: [{ id, turns }],
  };
}

export const internvlFormat: InputFormat = {
  name: 'internvl',
  description: 'InternVL / LLaVA chat JSONL: {id, video, conversations: [{from, value}]} with <video> placeholders',
  async detect(input) {
    const [file] = await chatInputFiles(input).catch(() => []);
    if (!file) return false;
    const first = await firstRecord(file);
    return first !== null && Array.isArray(first.conversations) && !('videos' in first) && !('dialogues' in first);
  },
  async *read(input, { root, defaultRole }: ReadOptions) {
    for (const file of await chatInputFiles(input)) yield* parseJsonItems(file, root, (v, f, l) => parseInternvlRecord(v, f, l, defaultRole));
  },
};
