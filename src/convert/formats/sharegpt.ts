/**
 * ShareGPT / LLaMA-Factory multimodal data: `{messages: [{role: "system"|"user"|"assistant",
 * content}], videos: [path]}` (LLaMA-Factory's OpenAI-style layout), also the ShareGPT layout
 * `{conversations: [{from, value}], videos: [path], system?}`. JSON arrays or JSON lines.
 *
 * Records sharing a video become one row (`video_id` = the path without its extension); each
 * record is one dialogue (id: the record's `id`, else `<file>:<line>`). `user` turns are spoken by
 * `user`, `assistant` turns by the role (`role` field, else `--default-role`; a record with neither
 * is skipped); the system message
 * becomes the profile. `<video>` placeholders are removed. No `videos` (or an empty list) makes a
 * text-only row; more than one video per record is not supported (skipped with the reason).
 */
import type { InputFormat, ReadOptions, SourceRecord } from '../record.js';
import { RecordProblem, describe, firstRecord, isObject, optionalString, requiredString, videoIdFromPath } from './json-input.js';
import { chatInputFiles, missingRole, parseChatTurns, recordRole } from './internvl.js';
import { parseJsonItems } from './rpv.js';

export function parseSharegptRecord(value: unknown, file: string, line: number, defaultRole?: string | null): SourceRecord {
  if (!isObject(value)) throw new RecordProblem(`wrong type: expected a JSON object, found ${describe(value)}`);
  const named = recordRole(value, defaultRole);
  const role = named ?? 'assistant';
  const parsed =
    value.messages !== undefined
      ? parseChatTurns(value.messages, 'messages', { speaker: 'role', text: 'content' }, role)
      : value.conversations !== undefined
        ? parseChatTurns(value.conversations, 'conversations', { speaker: 'from', text: 'value' }, role)
        : (() => {
            throw new RecordProblem('missing field: "messages"');
          })();
  let video: string | null = null;
  const videos = value.videos;
  if (videos !== undefined && videos !== null) {
    if (!Array.isArray(videos)) throw new RecordProblem(`wrong type: "videos" must be an array of paths, found ${describe(videos)}`);
    if (videos.length > 1) throw new RecordProblem(`unsupported: ${videos.length} videos in one record; rpv rows hold one video`);
    if (videos.length === 1) {
      if (typeof videos[0] !== 'string' || videos[0].trim() === '') throw new RecordProblem(`wrong type: "videos" 1 must be a path, found ${describe(videos[0])}`);
      video = videos[0];
    }
  }
  if (named === null) throw missingRole();
  const dialogueId = value.id === undefined || value.id === null ? `${file}:${line}` : requiredString(value, 'id', '', { number: true });
  return {
    file,
    line,
    id: video ? videoIdFromPath(video) : dialogueId,
    video,
    role,
    language: optionalString(value, 'language'),
    platform: optionalString(value, 'platform'),
    profile: optionalString(value, 'system') ?? parsed.system,
    summary: optionalString(value, 'summary'),
    dialogues: [{ id: dialogueId, turns: parsed.turns }],
  };
}

export const sharegptFormat: InputFormat = {
  name: 'sharegpt',
  description: 'ShareGPT / LLaMA-Factory: {messages: [{role, content}], videos: [path]}',
  async detect(input) {
    const [file] = await chatInputFiles(input).catch(() => []);
    if (!file) return false;
    const first = await firstRecord(file);
    return first !== null && (Array.isArray(first.messages) || (Array.isArray(first.conversations) && 'videos' in first));
  },
  async *read(input, { root, defaultRole }: ReadOptions) {
    for (const file of await chatInputFiles(input)) yield* parseJsonItems(file, root, (v, f, l) => parseSharegptRecord(v, f, l, defaultRole));
  },
};
