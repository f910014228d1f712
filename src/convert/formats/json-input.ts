/**
 * Reading JSON inputs record by record: JSON lines (streamed, one strict UTF-8 decode per line,
 * so one bad line is one skip) and JSON arrays (one record per element), plus the field checks
 * shared by the rpv, InternVL and ShareGPT readers. Skip reasons start with a short category
 * before the first colon (`malformed JSON: ...`), which the converter's summary groups by.
 */
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';

/** One element of a JSON input: its 1-based line (JSONL) or index + 1 (array), value or error. */
export type JsonItem = { line: number; value: unknown } | { line: number; error: string };

/** Parse one line's bytes as strict UTF-8 JSON. Null for a blank line. */
function parseLine(bytes: Buffer, line: number, decoder: TextDecoder): JsonItem | null {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return { line, error: 'invalid UTF-8: the line is not valid UTF-8 text' };
  }
  if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') return null;
  try {
    return { line, value: JSON.parse(text) };
  } catch (err) {
    return { line, error: `malformed JSON: ${(err as Error).message}` };
  }
}

/** The lines of a JSONL file as they stream in; blank lines are passed over (not records). */
export async function* readJsonLinesFile(file: string): AsyncGenerator<JsonItem> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending: Buffer[] = [];
  let line = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, start)) {
      pending.push(chunk.subarray(start, i));
      const item = parseLine(Buffer.concat(pending), ++line, decoder);
      pending = [];
      if (item) yield item;
      start = i + 1;
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  if (pending.length > 0) {
    const item = parseLine(Buffer.concat(pending), ++line, decoder);
    if (item) yield item;
  }
}

/**
 * The elements of a JSON array file (line = index + 1). A file that is not valid UTF-8, not JSON
 * or not an array yields a single error with line 0 (the whole file is skipped).
 */
export async function* readJsonArrayFile(file: string): AsyncGenerator<JsonItem> {
  const bytes = await fs.readFile(file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    yield { line: 0, error: 'invalid UTF-8: the file is not valid UTF-8 text' };
    return;
  }
  let value: unknown;
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    yield { line: 0, error: `malformed JSON: ${(err as Error).message}` };
    return;
  }
  if (!Array.isArray(value)) {
    yield { line: 0, error: `malformed JSON: expected an array of records, found ${describe(value)}` };
    return;
  }
  for (let i = 0; i < value.length; i++) yield { line: i + 1, value: value[i] };
}

/** JSONL or JSON array by extension (`.jsonl`/`.ndjson` vs `.json`). */
export function readJsonFile(file: string): AsyncGenerator<JsonItem> {
  return /\.json$/i.test(file) ? readJsonArrayFile(file) : readJsonLinesFile(file);
}

/** The first record of a JSONL or JSON-array file, for cheap `detect`s; null when unreadable. */
export async function firstRecord(file: string): Promise<Record<string, unknown> | null> {
  try {
    if (/\.json$/i.test(file)) {
      // Read at most the first 64 KiB; parse the first element when the array is larger.
      const handle = await fs.open(file, 'r');
      try {
        const buf = Buffer.alloc(65536);
        const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
        const text = buf.subarray(0, bytesRead).toString('utf8').replace(/^\ufeff/, '').trimStart();
        if (!text.startsWith('[')) return null;
        const first = firstJsonValue(text.slice(1));
        return isObject(first) ? first : null;
      } finally {
        await handle.close();
      }
    }
    for await (const item of readJsonLinesFile(file)) return 'value' in item && isObject(item.value) ? item.value : null;
  } catch {
    return null;
  }
  return null;
}

/** The first complete JSON value of `text` (balanced braces, strings honoured), or undefined. */
function firstJsonValue(text: string): unknown {
  let depth = 0;
  let inString = false;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0 && start >= 0) {
        try {
          return JSON.parse(text.slice(start, i + 1));
        } catch {
          return undefined;
        }
      }
    }
  }
  return undefined;
}

/** Input files of a folder with the given extensions, sorted, recursively (skipping dot-folders). */
export async function listFiles(dir: string, extensions: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await fs.readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (extensions.some((ext) => entry.name.toLowerCase().endsWith(ext))) out.push(full);
    }
  };
  await walk(dir);
  return out;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `a string`, `an array`, `null`, ... for messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return value === '' ? 'an empty string' : 'a string';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/** Thrown inside a record parser; becomes the record's skip reason. */
export class RecordProblem extends Error {}

/** A required non-empty string field (numbers are accepted for ids and turned into strings). */
export function requiredString(obj: Record<string, unknown>, key: string, where = '', options: { number?: boolean } = {}): string {
  const value = obj[key];
  if (value === undefined) throw new RecordProblem(`missing field: ${where}"${key}"`);
  if (options.number && typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') throw new RecordProblem(`wrong type: ${where}"${key}" must be a string, found ${describe(value)}`);
  if (value.trim() === '') throw new RecordProblem(`empty field: ${where}"${key}" is empty`);
  return value;
}

/** An optional string field: absent or null -> null; anything else but a string is a problem. */
export function optionalString(obj: Record<string, unknown>, key: string, where = ''): string | null {
  const value = obj[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new RecordProblem(`wrong type: ${where}"${key}" must be a string or null, found ${describe(value)}`);
  return value;
}

/** Removes `<video>` / `<image>` placeholders and the blank line around them. */
export function stripMediaPlaceholders(text: string): string {
  return text.replace(/[ \t]*<(video|image)>[ \t]*\n?/g, '').trim();
}

/** `videos/clip-01.mp4` -> `videos/clip-01`: a video id derived from its path. */
export function videoIdFromPath(video: string): string {
  const posix = video.replace(/\\/g, '/').replace(/^\.\//, '');
  const ext = path.posix.extname(posix);
  return ext ? posix.slice(0, -ext.length) : posix;
}
