/**
 * The resume journal of a conversion: `.rpv-convert-journal.json` in the output folder, rewritten
 * atomically after each finished shard. It lists the finished shards (their index entries and the
 * videos they hold) and the options that decide the output. `--resume` keeps exactly those shards
 * (after checking size and sha256), deletes any other shard or temp file (half-written, or written
 * but not yet journaled when the process died) and converts the remaining videos. Rows are written
 * in input order and shards cut at the same rows, so the result equals an uninterrupted run.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { RpvError } from '../util/errors.js';
import type { FeatureSchema, ShardEntry } from '../shard/schema.js';

export const JOURNAL_FILE = '.rpv-convert-journal.json';
const JOURNAL_VERSION = 1;

export interface JournalShard {
  index: number;
  entries: ShardEntry[];
  videoIds: string[];
  frames: number;
}

export interface Journal {
  version: number;
  /** Options that change the output; a resume with different ones is refused. */
  fingerprint: Record<string, unknown>;
  schema: FeatureSchema | null;
  encoder: { id: string; [key: string]: unknown } | null;
  shards: JournalShard[];
}

export async function readJournal(dir: string): Promise<Journal | null> {
  const file = path.join(dir, JOURNAL_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let journal: Journal;
  try {
    journal = JSON.parse(text) as Journal;
  } catch (err) {
    throw new RpvError(`convert --resume: ${file}: invalid JSON (${(err as Error).message}); remove the output folder and convert again`);
  }
  if (journal.version !== JOURNAL_VERSION || !Array.isArray(journal.shards)) {
    throw new RpvError(`convert --resume: ${file}: not a journal this rpv writes (version ${String(journal.version)})`);
  }
  return journal;
}

export async function writeJournal(dir: string, journal: Journal): Promise<void> {
  await writeFileAtomic(path.join(dir, JOURNAL_FILE), JSON.stringify(journal));
}

export function newJournal(fingerprint: Record<string, unknown>): Journal {
  return { version: JOURNAL_VERSION, fingerprint, schema: null, encoder: null, shards: [] };
}

/** Names of fingerprint keys whose values differ, as `--fps: 1 -> 2`. */
export function fingerprintChanges(before: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(now)]);
  const out: string[] = [];
  for (const key of keys) {
    const a = JSON.stringify(before[key] ?? null);
    const b = JSON.stringify(now[key] ?? null);
    if (a !== b) out.push(`${key}: ${a} -> ${b}`);
  }
  return out;
}

/**
 * Keep the journaled shards whose files are intact, in order, up to the first that is not (that
 * one and later ones are redone). Returns the kept shards and the ones dropped with why.
 */
export async function verifyJournalShards(dir: string, shards: readonly JournalShard[]): Promise<{ kept: JournalShard[]; dropped: string[] }> {
  const kept: JournalShard[] = [];
  const dropped: string[] = [];
  for (const shard of [...shards].sort((a, b) => a.index - b.index)) {
    if (dropped.length > 0) {
      dropped.push(`${shard.entries.map((e) => e.file).join(', ')}: after a damaged shard`);
      continue;
    }
    let problem: string | null = null;
    for (const entry of shard.entries) {
      try {
        const bytes = await fs.readFile(path.join(dir, entry.file));
        if (bytes.length !== entry.bytes) problem = `${entry.file}: ${bytes.length} bytes, journal says ${entry.bytes}`;
        else if (createHash('sha256').update(bytes).digest('hex') !== entry.sha256) problem = `${entry.file}: sha256 differs from the journal`;
      } catch (err) {
        problem = `${entry.file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`;
      }
      if (problem) break;
    }
    if (problem) dropped.push(problem);
    else kept.push(shard);
  }
  return { kept, dropped };
}

/** Shard files (`shard-*.arrow|parquet`) and temp files in `dir` not among `keep`: deleted. */
export async function removeStrayFiles(dir: string, keep: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const isShard = /^shard-\d+\.(arrow|parquet)$/.test(name);
    const isTemp = name.startsWith('.') && name.endsWith('.tmp');
    if ((isShard && !keep.has(name)) || isTemp) {
      await fs.rm(path.join(dir, name), { force: true });
      removed.push(name);
    }
  }
  return removed;
}
