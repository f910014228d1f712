/**
 * The rpv native export: a folder with `annotations.jsonl` (or `annotations.json`, an array), one
 * record per video, video paths relative to the folder:
 * `{id, video, role, language?, platform?, profile?, summary?, dialogues: [{id?, turns: [{speaker, text}]}]}`.
 * `video: null` makes a text-only row. Specified with an example in `shards/README.md`.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Turn } from '../../shard/schema.js';
import type { InputFormat, ParsedItem, SourceRecord } from '../record.js';
import { RecordProblem, describe, firstRecord, isObject, optionalString, readJsonFile, requiredString } from './json-input.js';

const ANNOTATION_FILES = ['annotations.jsonl', 'annotations.json'];

/** The annotation file of a native export folder or file, or null. */
export async function nativeAnnotationFile(input: string): Promise<string | null> {
  const stat = await fs.stat(input).catch(() => null);
  if (!stat) return null;
  if (stat.isFile()) return input;
  for (const name of ANNOTATION_FILES) {
    const file = path.join(input, name);
    if (await fs.stat(file).then((s) => s.isFile()).catch(() => false)) return file;
  }
  return null;
}

/** Turns of a dialogue as written (`{speaker, text}`), checked: non-empty speaker and text. */
export function parseTurns(value: unknown, where: string): Turn[] {
  if (value === undefined) throw new RecordProblem(`missing field: ${where}"turns"`);
  if (!Array.isArray(value)) throw new RecordProblem(`wrong type: ${where}"turns" must be an array, found ${describe(value)}`);
  if (value.length === 0) throw new RecordProblem(`empty dialogue: ${where}has no turns`);
  return value.map((turn, t) => {
    const at = `${where}turn ${t + 1}: `;
    if (!isObject(turn)) throw new RecordProblem(`wrong type: ${at}expected an object {speaker, text}, found ${describe(turn)}`);
    const speaker = turn.speaker;
    const text = turn.text;
    if (speaker === undefined) throw new RecordProblem(`missing field: ${at}"speaker"`);
    if (typeof speaker !== 'string') throw new RecordProblem(`wrong type: ${at}"speaker" must be a string, found ${describe(speaker)}`);
    if (speaker.trim() === '') throw new RecordProblem(`empty turn: ${at}empty speaker`);
    if (text === undefined) throw new RecordProblem(`missing field: ${at}"text"`);
    if (typeof text !== 'string') throw new RecordProblem(`wrong type: ${at}"text" must be a string, found ${describe(text)}`);
    if (text.trim() === '') throw new RecordProblem(`empty turn: ${at}empty text`);
    return { speaker, text };
  });
}

/** One native record, or throws RecordProblem with the reason. */
export function parseNativeRecord(value: unknown, file: string, line: number): SourceRecord {
  if (!isObject(value)) throw new RecordProblem(`wrong type: expected a JSON object, found ${describe(value)}`);
  const id = requiredString(value, 'id', '', { number: true });
  if (!('video' in value)) throw new RecordProblem('missing field: "video" (a path relative to the export folder, or null for a text-only row)');
  const video = value.video === null ? null : requiredString(value, 'video');
  const role = requiredString(value, 'role');
  const dialogues = value.dialogues;
  if (dialogues === undefined) throw new RecordProblem('missing field: "dialogues"');
  if (!Array.isArray(dialogues)) throw new RecordProblem(`wrong type: "dialogues" must be an array, found ${describe(dialogues)}`);
  if (dialogues.length === 0) throw new RecordProblem('empty dialogue: "dialogues" is empty');
  return {
    file,
    line,
    id,
    video,
    role,
    language: optionalString(value, 'language'),
    platform: optionalString(value, 'platform'),
    profile: optionalString(value, 'profile'),
    summary: optionalString(value, 'summary'),
    dialogues: dialogues.map((d, i) => {
      const where = `dialogue ${i + 1}: `;
      if (!isObject(d)) throw new RecordProblem(`wrong type: ${where}expected an object {id?, turns}, found ${describe(d)}`);
      const did = d.id === undefined || d.id === null ? undefined : requiredString(d, 'id', where, { number: true });
      return { id: did, turns: parseTurns(d.turns, where) };
    }),
  };
}

/** Yield records and skips of JSON items parsed by `parse`; `source` is relative to `root`. */
export async function* parseJsonItems(
  file: string,
  root: string,
  parse: (value: unknown, source: string, line: number) => SourceRecord,
): AsyncGenerator<ParsedItem> {
  const source = path.relative(root, file) || path.basename(file);
  for await (const item of readJsonFile(file)) {
    const line = item.line > 0 ? item.line : undefined;
    if ('error' in item) {
      yield { kind: 'skip', skip: line === undefined ? { source, reason: item.error } : { source, line, reason: item.error } };
      continue;
    }
    try {
      yield { kind: 'record', record: parse(item.value, source, item.line) };
    } catch (err) {
      if (!(err instanceof RecordProblem)) throw err;
      yield { kind: 'skip', skip: { source, line: item.line, reason: err.message } };
    }
  }
}

export const rpvFormat: InputFormat = {
  name: 'rpv',
  description: 'rpv native export: a folder with annotations.jsonl (or annotations.json), one record per video',
  async detect(input) {
    const file = await nativeAnnotationFile(input);
    if (!file) return false;
    if (ANNOTATION_FILES.includes(path.basename(file)) && file !== input) return true;
    const first = await firstRecord(file);
    return first !== null && Array.isArray(first.dialogues) && 'role' in first;
  },
  async *read(input, { root }) {
    const file = await nativeAnnotationFile(input);
    if (!file) {
      yield { kind: 'skip', skip: { source: input, reason: `missing file: no ${ANNOTATION_FILES.join(' or ')} in ${input}` } };
      return;
    }
    yield* parseJsonItems(file, root, parseNativeRecord);
  },
};
