/**
 * The last step of `convertExport`: the dataset's index from the finished shards (as the journal
 * lists them) and every skip, with the counts checked to reconcile (read = converted + skipped,
 * rows = videos less skipped ones) before anything is written.
 */
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION } from '../shard/schema.js';
import type { FeatureSchema, SamplingSettings, ShardIndex, SkipRecord } from '../shard/schema.js';
import type { Part, VideoGroup } from './group.js';
import type { JournalShard } from './journal.js';

export interface IndexInputs {
  /** Every group of this part, and those converted in this run (the rest were in resumed shards). */
  groups: readonly VideoGroup[];
  todo: readonly VideoGroup[];
  /** Skips of reading and grouping. */
  readSkips: readonly SkipRecord[];
  /** Skips of the videos of `todo`, by position in `todo`. */
  mediaSkips: ReadonlyMap<number, SkipRecord[]>;
  /** Records and unparseable items read. */
  readItems: number;
  /** Finished shards, resumed ones included. */
  shards: readonly JournalShard[];
  schema: FeatureSchema;
  sampling: SamplingSettings;
  encoder: { id: string; [key: string]: unknown };
  input: { path: string; format: string; mediaRoot: string };
  part: Part;
}

/** The index of a finished conversion; throws when the counts do not reconcile. */
export function buildIndex(p: IndexInputs): ShardIndex {
  const skipped = [...p.readSkips];
  const skippedGroups = new Set<VideoGroup>();
  for (let i = 0; i < p.todo.length; i++) {
    const skips = p.mediaSkips.get(i);
    if (!skips) continue;
    skippedGroups.add(p.todo[i]!);
    skipped.push(...skips);
  }
  // Skips in input order (file, then line), whatever stage found them.
  skipped.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : (a.line ?? 0) - (b.line ?? 0)));
  const converted = p.groups.reduce((n, g) => n + (skippedGroups.has(g) ? 0 : g.records.length), 0);
  const shardEntries = p.shards.flatMap((s) => s.entries);
  const rowsTotal = p.shards.reduce((n, s) => n + s.videoIds.length, 0);
  const dialoguesTotal = p.shards.reduce((n, s) => n + s.entries[0]!.dialogues, 0);
  const framesTotal = p.shards.reduce((n, s) => n + s.frames, 0);
  const index: ShardIndex = {
    format: SHARD_FORMAT_NAME,
    version: SHARD_FORMAT_VERSION,
    created: new Date().toISOString(),
    schema: { ...p.schema, columns: SHARD_COLUMNS },
    sampling: p.sampling,
    encoder: p.encoder,
    input: p.input,
    ...(p.part.count > 1 ? { part: { index: p.part.index, count: p.part.count } } : {}),
    shards: shardEntries,
    totals: { rows: rowsTotal, dialogues: dialoguesTotal, frames: framesTotal, bytes: shardEntries.reduce((n, e) => n + e.bytes, 0), shards: shardEntries.length },
    counts: { read: p.readItems, converted, skipped: skipped.length, rows: rowsTotal, grouped: converted - rowsTotal },
    skipped,
  };
  if (rowsTotal !== p.groups.length - skippedGroups.size) {
    throw new Error(`convert: ${rowsTotal} rows in shards, expected ${p.groups.length - skippedGroups.size} (videos less skipped ones)`);
  }
  if (index.counts.read !== index.counts.converted + index.counts.skipped) {
    throw new Error(`convert: counts do not reconcile: read ${index.counts.read} != converted ${index.counts.converted} + skipped ${index.counts.skipped}`);
  }
  return index;
}
