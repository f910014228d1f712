import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';

/**
 * On-disk cache of judge calls, so an interrupted or repeated evaluation resumes without paying
 * for the same call twice. One append-only JSON-lines file, `judge-cache.jsonl`, one line per
 * finished call: `{ key, model, text, created }`. The key is the SHA-256 of the request's
 * canonical JSON (model, messages, sampling settings): change any of them and the call is made
 * anew. The endpoint's URL is not part of the key, so moving to another host serving the same
 * model keeps the cache. A line cut short by a kill is ignored on the next open.
 */
export interface CachedCall {
  key: string;
  model: string;
  text: string;
  created: string;
}

export const JUDGE_CACHE_FILE = 'judge-cache.jsonl';

/** SHA-256 hex of the canonical JSON of `request` (object keys sorted). */
export function hashRequest(request: unknown): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export class JudgeCache {
  readonly file: string;
  private readonly entries: Map<string, CachedCall>;
  private writing: Promise<void> = Promise.resolve();
  /** Lines of the file that could not be read (a write cut short), ignored. */
  readonly corruptLines: number;

  private constructor(file: string, entries: Map<string, CachedCall>, corruptLines: number) {
    this.file = file;
    this.entries = entries;
    this.corruptLines = corruptLines;
  }

  /** Open (or create) the cache in `dir`. */
  static async open(dir: string): Promise<JudgeCache> {
    await fs.mkdir(dir, { recursive: true });
    const file = path.join(dir, JUDGE_CACHE_FILE);
    const entries = new Map<string, CachedCall>();
    let corrupt = 0;
    let text = '';
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const entry = JSON.parse(line) as CachedCall;
        if (typeof entry.key === 'string' && typeof entry.text === 'string') entries.set(entry.key, entry);
        else corrupt++;
      } catch {
        corrupt++;
      }
    }
    // A partial last line (killed mid-write) must not glue onto the next appended line.
    if (text.length > 0 && !text.endsWith('\n')) await fs.appendFile(file, '\n');
    return new JudgeCache(file, entries, corrupt);
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): CachedCall | undefined {
    return this.entries.get(key);
  }

  /** Record a finished call; appends are serialised so concurrent calls never interleave. */
  async put(key: string, model: string, text: string): Promise<void> {
    const entry: CachedCall = { key, model, text, created: new Date().toISOString() };
    this.entries.set(key, entry);
    const line = `${JSON.stringify(entry)}\n`;
    const done = this.writing.then(() => fs.appendFile(this.file, line));
    this.writing = done.catch(() => undefined);
    await done;
  }
}
