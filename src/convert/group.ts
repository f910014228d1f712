/**
 * From input records to the videos to convert: checks every record, keeps this part's records
 * (`--part i/N`), and groups records that share a video into one shard row. Every record that
 * does not end up in a row becomes a skip with its reason, so that
 * `read = converted + skipped` holds, where `converted` counts records (several may share a row).
 */
import { createHash } from 'node:crypto';
import { RpvError } from '../util/errors.js';
import type { Dialogue, SkipRecord } from '../shard/schema.js';
import type { SourceRecord } from './record.js';
import { mediaPathProblem, normaliseMediaPath } from './media-path.js';

export { normaliseMediaPath, mediaPathProblem };

/** `--part i/N`: this run converts the records whose video key hashes to `index` (0-based). */
export interface Part {
  index: number;
  count: number;
}

/** Parse `i/N` (0 <= i < N). */
export function parsePart(spec: string): Part {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new RpvError(`convert: --part "${spec}": expected i/N, e.g. 0/4 (i counts from 0)`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1) throw new RpvError(`convert: --part "${spec}": N must be at least 1`);
  if (index >= count) throw new RpvError(`convert: --part "${spec}": i must be below N (parts are numbered 0 to ${count - 1})`);
  return { index, count };
}

/** The part (0..count-1) a video key belongs to: the first 4 bytes of its sha256, modulo count. */
export function partOfKey(key: string, count: number): number {
  if (count <= 1) return 0;
  return createHash('sha256').update(key).digest().readUInt32BE(0) % count;
}

/** The key records are grouped (and parts assigned) by: the media path, or the id when text-only. */
export function groupKeyOf(record: SourceRecord): string {
  return record.video === null ? `text:${record.id}` : `media:${normaliseMediaPath(record.video)}`;
}

/** One shard row to be: a video (or text-only id) and the records that share it. */
export interface VideoGroup {
  key: string;
  videoId: string;
  /** Normalised media path relative to the root; null for text-only rows. */
  video: string | null;
  media: 'video' | 'image';
  role: string;
  language: string | null;
  platform: string | null;
  profile: string | null;
  summary: string | null;
  /** `annotations.jsonl:12` of the first record. */
  source: string;
  records: SourceRecord[];
  dialogues: Dialogue[];
}

export interface GroupResult {
  groups: VideoGroup[];
  skips: SkipRecord[];
}

export function skipOf(record: SourceRecord, reason: string): SkipRecord {
  return record.line === undefined ? { source: record.file, reason } : { source: record.file, line: record.line, reason };
}

function where(record: SourceRecord): string {
  return record.line === undefined ? record.file : `${record.file} line ${record.line}`;
}

/**
 * Group records by video in order of first appearance. A record is skipped when its media path
 * escapes the export, when it names the same video under a different id or role than an earlier
 * record, when its id is taken by another video, or when one of its dialogue ids is already used
 * in the row. Dialogues without an id get `d<n>` (n: position in the row, unique in the row).
 */
export function groupRecords(records: Iterable<SourceRecord>): GroupResult {
  const byKey = new Map<string, VideoGroup>();
  const keyOfId = new Map<string, string>();
  const skips: SkipRecord[] = [];
  const explicitIds = new Map<VideoGroup, Set<string>>();
  for (const record of records) {
    const skip = (reason: string) => skips.push(skipOf(record, reason));
    const problem = validateRecord(record);
    if (problem) {
      skip(problem);
      continue;
    }
    const key = groupKeyOf(record);
    let group = byKey.get(key);
    if (group) {
      if (group.videoId !== record.id) {
        skip(`conflicting id: ${record.video} is already the video of id "${group.videoId}" (${where(group.records[0]!)}), this record says "${record.id}"`);
        continue;
      }
      if (group.role !== record.role) {
        skip(`conflicting role: video "${group.videoId}" already has role "${group.role}" (${where(group.records[0]!)}), this record says "${record.role}"`);
        continue;
      }
    } else {
      const other = keyOfId.get(record.id);
      if (other !== undefined) {
        const first = byKey.get(other)!.records[0]!;
        skip(`duplicate video id: "${record.id}" is already used for ${byKey.get(other)!.video ?? 'a text-only row'} (${where(first)})`);
        continue;
      }
    }
    const ids = group ? explicitIds.get(group)! : new Set<string>();
    const mine = record.dialogues.map((d) => d.id).filter((id): id is string => id !== undefined);
    const clash = mine.find((id, i) => ids.has(id) || mine.indexOf(id) !== i);
    if (clash !== undefined) {
      skip(`duplicate dialogue id: "${clash}" appears twice in video "${record.id}"`);
      continue;
    }
    if (!group) {
      group = {
        key,
        videoId: record.id,
        video: record.video === null ? null : normaliseMediaPath(record.video),
        media: record.media ?? 'video',
        role: record.role,
        language: null,
        platform: null,
        profile: null,
        summary: null,
        source: record.line === undefined ? record.file : `${record.file}:${record.line}`,
        records: [],
        dialogues: [],
      };
      byKey.set(key, group);
      keyOfId.set(record.id, key);
      explicitIds.set(group, ids);
    }
    for (const id of mine) ids.add(id);
    group.records.push(record);
    group.language ??= record.language ?? null;
    group.platform ??= record.platform ?? null;
    group.profile ??= record.profile ?? null;
    group.summary ??= record.summary ?? null;
    for (const d of record.dialogues) group.dialogues.push({ dialogue_id: d.id ?? '', turns: d.turns });
  }
  // Ids for dialogues that came without one: d<position>, avoiding every explicit id in the row.
  for (const group of byKey.values()) {
    const taken = explicitIds.get(group)!;
    group.dialogues.forEach((d, i) => {
      if (d.dialogue_id !== '') return;
      let id = `d${i}`;
      for (let k = 1; taken.has(id); k++) id = `d${i}-${k}`;
      taken.add(id);
      d.dialogue_id = id;
    });
  }
  return { groups: [...byKey.values()], skips };
}

/** Checks every format's records get (importers included): a reason, or null when usable. */
export function validateRecord(record: SourceRecord): string | null {
  if (typeof record.id !== 'string' || record.id.trim() === '') return 'missing field: "id"';
  if (typeof record.role !== 'string' || record.role.trim() === '') return 'missing field: "role"';
  if (record.video !== null) {
    if (typeof record.video !== 'string' || record.video.trim() === '') return 'missing field: "video"';
    const problem = mediaPathProblem(record.video);
    if (problem) return problem.endsWith('is absolute; media paths must be relative to the export folder') ? `${problem} (or inside a --media-root given explicitly)` : problem;
  }
  if (!Array.isArray(record.dialogues) || record.dialogues.length === 0) return 'empty dialogue: the record has no dialogues';
  for (let i = 0; i < record.dialogues.length; i++) {
    const turns = record.dialogues[i]!.turns;
    if (!Array.isArray(turns) || turns.length === 0) return `empty dialogue: dialogue ${i + 1} has no turns`;
    for (let t = 0; t < turns.length; t++) {
      const turn = turns[t]!;
      if (typeof turn.speaker !== 'string' || turn.speaker.trim() === '') return `empty turn: dialogue ${i + 1} turn ${t + 1}: empty speaker`;
      if (typeof turn.text !== 'string' || turn.text.trim() === '') return `empty turn: dialogue ${i + 1} turn ${t + 1}: empty text`;
      if (hasLoneSurrogate(turn.text)) return `invalid UTF-8: dialogue ${i + 1} turn ${t + 1}: text holds a lone surrogate`;
    }
  }
  return null;
}

/** JSON's `\ud800` escapes can smuggle text that is not encodable as UTF-8. */
function hasLoneSurrogate(s: string): boolean {
  return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

/** Short category of a skip reason (the text before its first colon), for summaries. */
export function skipCategory(reason: string): string {
  const i = reason.indexOf(':');
  return (i > 0 ? reason.slice(0, i) : reason).trim();
}
