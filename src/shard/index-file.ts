/**
 * A dataset's `index.json`: read (local folder, file, or http(s) URL) with validation, and
 * written atomically. Its fields are specified in `shards/README.md` and typed in `schema.ts`.
 */
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { blockProblem } from './blocks.js';
import type { RetryOptions } from './fetch.js';
import { isUrl, readDatasetFile } from './source.js';
import { SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION, type ShardIndex } from './schema.js';

export const INDEX_FILE_NAME = 'index.json';

export { isUrl };

/**
 * Where `index.json` of `dirOrUrl` lives: a folder gets `/index.json` appended, a path or URL
 * that ends in `.json` is taken as is.
 */
export function indexLocation(dirOrUrl: string): string {
  if (isUrl(dirOrUrl)) {
    const url = new URL(dirOrUrl);
    if (!url.pathname.endsWith('.json')) url.pathname = url.pathname.replace(/\/?$/, `/${INDEX_FILE_NAME}`);
    return url.toString();
  }
  return dirOrUrl.endsWith('.json') ? dirOrUrl : path.join(dirOrUrl, INDEX_FILE_NAME);
}

/**
 * Read and validate a dataset's index from a folder, an index.json path, or an http(s) URL
 * (downloaded with `retry`, through the same module as the shards: ./source.ts).
 */
export async function readShardIndex(dirOrUrl: string, options: { retry?: RetryOptions } = {}): Promise<ShardIndex> {
  const where = indexLocation(dirOrUrl);
  let text: string;
  try {
    text = new TextDecoder().decode(await readDatasetFile(where, options.retry));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RpvError(`readShardIndex: ${where}: not found (is this a folder written by rpv convert?)`);
    throw new RpvError(`readShardIndex: ${where}: ${isUrl(where) ? '' : 'cannot read: '}${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RpvError(`readShardIndex: ${where}: invalid JSON: ${(err as Error).message}`);
  }
  return validateShardIndex(value, where);
}

/** Check that `value` is a shard index this version of rpv reads; throws naming the field. */
export function validateShardIndex(value: unknown, where = INDEX_FILE_NAME): ShardIndex {
  const fail = (msg: string): never => {
    throw new RpvError(`readShardIndex: ${where}: ${msg}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('expected a JSON object');
  const v = value as Record<string, unknown>;
  if (v.format !== SHARD_FORMAT_NAME) fail(`format: expected "${SHARD_FORMAT_NAME}", found ${JSON.stringify(v.format)}`);
  if (typeof v.version !== 'number') fail(`version: expected a number, found ${JSON.stringify(v.version)}`);
  if ((v.version as number) > SHARD_FORMAT_VERSION) {
    fail(`version ${v.version as number} is newer than this rpv reads (${SHARD_FORMAT_VERSION}); upgrade rpv`);
  }
  if ((v.version as number) < 1) fail(`version: expected >= 1, found ${v.version as number}`);
  const schema = v.schema as Record<string, unknown> | undefined;
  if (!schema || typeof schema !== 'object') fail('schema: missing');
  for (const key of ['featureDim', 'tokensPerFrame'] as const) {
    if (!Number.isInteger(schema![key]) || (schema![key] as number) < 0) fail(`schema.${key}: expected an integer >= 0, found ${JSON.stringify(schema![key])}`);
  }
  if (schema!.dtype !== 'float16' && schema!.dtype !== 'float32') fail(`schema.dtype: expected "float16" or "float32", found ${JSON.stringify(schema!.dtype)}`);
  if (!Array.isArray(v.shards)) fail('shards: expected an array');
  (v.shards as unknown[]).forEach((s, i) => {
    const e = s as Record<string, unknown>;
    if (!e || typeof e !== 'object') fail(`shards[${i}]: expected an object`);
    if (typeof e.file !== 'string' || e.file === '') fail(`shards[${i}].file: expected a file name`);
    if (path.isAbsolute(e.file as string) || (e.file as string).split(/[\\/]/).includes('..')) {
      fail(`shards[${i}].file: ${JSON.stringify(e.file)} must be relative to the index, without ..`);
    }
    if (e.format !== 'arrow' && e.format !== 'parquet') fail(`shards[${i}].format: expected "arrow" or "parquet", found ${JSON.stringify(e.format)}`);
    for (const key of ['rows', 'dialogues', 'bytes'] as const) {
      if (!Number.isInteger(e[key]) || (e[key] as number) < 0) fail(`shards[${i}].${key}: expected an integer >= 0, found ${JSON.stringify(e[key])}`);
    }
    if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) fail(`shards[${i}].sha256: expected 64 hex digits`);
    const blocks = blockProblem(e as { rows: number; dialogues: number });
    if (blocks) fail(`shards[${i}].${blocks}`);
    const hashes = blockHashProblem(e);
    if (hashes) fail(`shards[${i}].${hashes}`);
  });
  if (!v.totals || typeof v.totals !== 'object') fail('totals: missing');
  if (!v.counts || typeof v.counts !== 'object') fail('counts: missing');
  if (!Array.isArray(v.skipped)) fail('skipped: expected an array');
  if (!v.sampling || typeof v.sampling !== 'object') fail('sampling: missing');
  if (!v.encoder || typeof v.encoder !== 'object' || typeof (v.encoder as { id?: unknown }).id !== 'string') fail('encoder.id: missing');
  return value as ShardIndex;
}

/** Why an entry's block hash fields (verify.ts) are inconsistent, or null; all three or none. */
function blockHashProblem(e: Record<string, unknown>): string | null {
  const { blockOffsets, blockSha256, headTailSha256 } = e;
  if (blockOffsets === undefined && blockSha256 === undefined && headTailSha256 === undefined) return null;
  if (!Array.isArray(e.blockDialogues)) return 'blockOffsets: block hashes need blockRows and blockDialogues';
  const count = e.blockDialogues.length;
  if (!Array.isArray(blockOffsets) || blockOffsets.length !== count + 1) return `blockOffsets: expected ${count + 1} offsets (one per block, then the end)`;
  for (let b = 0; b <= count; b++) {
    const at = blockOffsets[b] as unknown;
    const prev = b === 0 ? 0 : (blockOffsets[b - 1] as number);
    if (!Number.isInteger(at) || (at as number) < prev || (at as number) > (e.bytes as number)) {
      return `blockOffsets[${b}]: expected an integer from ${prev} to the file's ${e.bytes as number} bytes, found ${JSON.stringify(at)}`;
    }
  }
  if (!Array.isArray(blockSha256) || blockSha256.length !== count) return `blockSha256: expected ${count} hashes (one per block)`;
  const bad = blockSha256.findIndex((h) => typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h));
  if (bad >= 0) return `blockSha256[${bad}]: expected 64 hex digits`;
  if (typeof headTailSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(headTailSha256)) return 'headTailSha256: expected 64 hex digits';
  return null;
}

/** Write `index` to `<dir>/index.json` atomically (readers never see a half-written index). */
export async function writeShardIndex(dir: string, index: ShardIndex): Promise<string> {
  validateShardIndex(index, path.join(dir, INDEX_FILE_NAME));
  const file = path.join(dir, INDEX_FILE_NAME);
  await writeFileAtomic(file, `${JSON.stringify(index, null, 2)}\n`);
  return file;
}

/** Shards of one format (with `--format both` the index lists every row set once per format). */
export function shardsOfFormat(index: ShardIndex, format: 'arrow' | 'parquet') {
  return index.shards.filter((s) => s.format === format);
}
