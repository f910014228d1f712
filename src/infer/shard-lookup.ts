/**
 * What `rpv generate` checks against the run's shards before generating: that the role is one the
 * run was trained on, and that a `--row` exists (else the ids that look like it: `videos/clip03`
 * for `clip03`). Shard bytes are checked against index.json as they are read (`readShardRows`,
 * ../shard/source.ts), unless the run's recipe says `data.verify: false`.
 */
import { readShardIndex } from '../shard/index-file.js';
import type { ShardEntry, ShardIndex, VideoRow } from '../shard/schema.js';
import { readShardRows } from '../shard/source.js';

export interface ShardRoles {
  /** Videos per role, in order of first appearance. */
  roles: Map<string, number>;
  /** Every video_id, in shard order. */
  videoIds: string[];
}

/** How the lookups read shards. */
export interface ShardLookupOptions {
  /** Who reads, the first word of errors (default `generate`). */
  who?: string;
  /** Check shard bytes against index.json (default true; a run's `data.verify`). */
  verify?: boolean;
}

/** The shards of one format to look rows up in: Arrow when the dataset has both. */
function lookupShards(index: ShardIndex): ShardEntry[] {
  const arrow = index.shards.filter((s) => s.format === 'arrow');
  return arrow.length > 0 ? arrow : index.shards;
}

/** The roles and video ids of a dataset (reads two columns of each shard, not the frames). */
export async function readShardRoles(source: string, { who = 'generate', verify = true }: ShardLookupOptions = {}): Promise<ShardRoles> {
  const index = await readShardIndex(source);
  const roles = new Map<string, number>();
  const videoIds: string[] = [];
  for (const shard of lookupShards(index)) {
    const rows = await readShardRows(source, shard, { who, verify, columns: ['video_id', 'role'] });
    for (const row of rows) {
      roles.set(row.role, (roles.get(row.role) ?? 0) + 1);
      videoIds.push(row.video_id);
    }
  }
  return { roles, videoIds };
}

/**
 * The row of `videoId` in the dataset at `source`, with the dataset's index; `row` is null when no
 * shard holds it. Shards are read whole, one at a time, until the row is found.
 */
export async function findShardRow(source: string, videoId: string, { who = 'generate', verify = true }: ShardLookupOptions = {}): Promise<{ row: VideoRow | null; index: ShardIndex }> {
  const index = await readShardIndex(source);
  for (const shard of lookupShards(index)) {
    const row = (await readShardRows(source, shard, { who, verify })).find((r) => r.video_id === videoId);
    if (row) return { row, index };
  }
  return { row: null, index };
}

/** Levenshtein distance of two strings (code points), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    for (let j = 1; j <= y.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[y.length]!;
}

/**
 * Up to `limit` names close to `wanted`: those that end with it after a `/` (a folder prefix),
 * contain it, or differ by at most a third of its length (at least 2 edits); closest first.
 */
export function closeNames(wanted: string, names: readonly string[], limit = 5): string[] {
  const lower = wanted.toLowerCase();
  const scored: { name: string; rank: number }[] = [];
  for (const name of new Set(names)) {
    const n = name.toLowerCase();
    let rank: number;
    if (n.endsWith(`/${lower}`) || n.split('/').at(-1)!.replace(/\.[^.]+$/, '') === lower) rank = 0;
    else if (n.includes(lower) || lower.includes(n)) rank = 1;
    else {
      const d = Math.min(editDistance(lower, n), editDistance(lower, n.split('/').at(-1)!));
      if (d > Math.max(2, Math.floor(Array.from(wanted).length / 3))) continue;
      rank = 1 + d;
    }
    scored.push({ name, rank });
  }
  return scored
    .sort((p, q) => p.rank - q.rank || p.name.localeCompare(q.name))
    .slice(0, limit)
    .map((s) => s.name);
}

/** A list for a message: the first `limit` items, then `and N more`. */
export function listForMessage(items: readonly string[], limit = 8): string {
  return items.length > limit ? `${items.slice(0, limit).join(', ')} and ${items.length - limit} more` : items.join(', ');
}
