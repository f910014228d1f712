/**
 * The loader's resumable state: small JSON, no sample payloads. With the dataset's index it
 * fixes everything the order depends on, plus how far this rank got.
 */
import { createHash } from 'node:crypto';
import { RpvError } from '../util/errors.js';
import type { ShardEntry } from '../shard/schema.js';

export const LOADER_STATE_FORMAT = 'rpv-loader-state';
export const LOADER_STATE_VERSION = 1;

export interface LoaderState {
  format: typeof LOADER_STATE_FORMAT;
  version: number;
  /** Fingerprint of the shard list (files, sizes, checksums) the order was computed from; '' before the index was read. */
  dataset: string;
  seed: number;
  shuffle: boolean;
  windowShards: number;
  batchSize: number;
  rank: number;
  worldSize: number;
  dropLast: boolean;
  /** Epoch the next batch belongs to. */
  epoch: number;
  /** Batches this rank has already yielded in `epoch`. */
  batches: number;
}

/** Order-relevant settings a resumed loader must share with the run that saved the state. */
export const ORDER_KEYS = ['seed', 'shuffle', 'windowShards', 'batchSize', 'rank', 'worldSize', 'dropLast'] as const;

export function datasetFingerprint(shards: readonly ShardEntry[]): string {
  const h = createHash('sha256');
  for (const s of shards) h.update(`${s.file}\0${s.dialogues}\0${s.bytes}\0${s.sha256}\n`);
  return h.digest('hex').slice(0, 16);
}

/** Check a value claimed to be a LoaderState (e.g. read back from a checkpoint's JSON). */
export function validateLoaderState(value: unknown): LoaderState {
  const fail = (msg: string): never => {
    throw new RpvError(`loader: resume state: ${msg}`);
  };
  if (typeof value !== 'object' || value === null) fail('expected an object from loader.state()');
  const v = value as Record<string, unknown>;
  if (v.format !== LOADER_STATE_FORMAT) fail(`format: expected "${LOADER_STATE_FORMAT}", found ${JSON.stringify(v.format)}`);
  if (v.version !== LOADER_STATE_VERSION) fail(`version: expected ${LOADER_STATE_VERSION}, found ${JSON.stringify(v.version)}`);
  if (typeof v.dataset !== 'string') fail('dataset: expected a string');
  for (const key of ['seed', 'windowShards', 'batchSize', 'rank', 'worldSize', 'epoch', 'batches'] as const) {
    if (!Number.isInteger(v[key])) fail(`${key}: expected an integer, found ${JSON.stringify(v[key])}`);
  }
  for (const key of ['shuffle', 'dropLast'] as const) {
    if (typeof v[key] !== 'boolean') fail(`${key}: expected a boolean, found ${JSON.stringify(v[key])}`);
  }
  return v as unknown as LoaderState;
}
