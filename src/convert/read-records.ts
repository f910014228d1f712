/**
 * The first step of `convertExport`: read an export's records through its input format, keep the
 * ones of this `--part`, and group them by video. Items that cannot be read and records that
 * fail their checks become skips (each with its reason); with `strict` the first one stops the
 * conversion instead.
 */
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { videoIdFromPath } from './formats/json-input.js';
import type { SkipRecord } from '../shard/schema.js';
import type { InputFormat, SourceRecord } from './record.js';
import { groupKeyOf, groupRecords, partOfKey, type Part, type VideoGroup } from './group.js';

export interface ReadRecordsOptions {
  /** Folder media paths are relative to. */
  root: string;
  missingMedia: 'skip' | 'text-only';
  /** Keep only the records whose video hashes to this part. */
  part: Part;
  /** Throw at the first skip (`strictError`). */
  strict: boolean;
  /** The role of records that name none (`--default-role`); null: they are skipped. */
  defaultRole?: string | null;
  /**
   * An explicitly given `--media-root`: absolute media paths inside it are accepted and stored
   * relative to it (LLaMA-Factory data often holds absolute paths). Null: absolute paths are refused.
   */
  absoluteMediaRoot?: string | null;
  /** Stop reading when this fires (`interrupted`; nothing is converted yet, so resume starts over). */
  signal?: AbortSignal;
}

export interface ReadRecords {
  /** Records and unparseable items read (of this part): `counts.read` of the index. */
  items: number;
  /** The signal stopped the reading. */
  interrupted: boolean;
  /** Skips found while reading and grouping, in the order found. */
  skipped: SkipRecord[];
  /** The part's records grouped by video, in input order. */
  groups: VideoGroup[];
}

/** The error `--strict` stops with at a skipped record. */
export function strictError(skip: SkipRecord): RpvError {
  return new RpvError(`convert --strict: ${skip.source}${skip.line !== undefined ? ` line ${skip.line}` : ''}: ${skip.reason}`);
}

/**
 * An absolute media path inside `root` becomes relative to it; an id derived from the path
 * (InternVL, ShareGPT: the path without extension) follows. Paths outside stay as they are and
 * are refused by the record checks.
 */
function relativiseMedia(record: SourceRecord, root: string): void {
  const video = record.video!;
  if (!path.isAbsolute(video)) return;
  const rel = path.relative(root, video);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return;
  const posix = rel.split(path.sep).join('/');
  if (record.id === videoIdFromPath(video)) record.id = videoIdFromPath(posix);
  record.video = posix;
}

/** Read, filter to the part, and group; see the module comment. */
export async function readRecords(format: InputFormat, input: string, options: ReadRecordsOptions): Promise<ReadRecords> {
  const { part } = options;
  let items = 0;
  let interrupted = false;
  const skipped: SkipRecord[] = [];
  const records: SourceRecord[] = [];
  const skip = (s: SkipRecord) => {
    if (options.strict) throw strictError(s);
    skipped.push(s);
  };
  const readOptions = { root: options.root, defaultRole: options.defaultRole ?? null, missingMedia: options.missingMedia };
  for await (const item of format.read(input, readOptions)) {
    if (options.signal?.aborted) {
      interrupted = true;
      break;
    }
    if (item.kind === 'skip') {
      // Items without a video key (unparseable) are reported by part 0 only, so parts sum up.
      if (part.index !== 0) continue;
      items++;
      skip(item.skip);
    } else {
      if (options.absoluteMediaRoot && item.record.video !== null) relativiseMedia(item.record, options.absoluteMediaRoot);
      if (partOfKey(groupKeyOf(item.record), part.count) !== part.index) continue;
      items++;
      records.push(item.record);
    }
  }
  const grouped = groupRecords(records);
  for (const s of grouped.skips) skip(s);
  return { items, interrupted, skipped, groups: grouped.groups };
}
