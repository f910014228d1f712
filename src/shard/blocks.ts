/**
 * Blocks: the part of a shard that can be read alone. A shard's rows are cut into blocks of
 * `blockRows` consecutive rows (the last may be shorter), sized so that a block's Arrow bytes stay
 * under `blockBytes` (default 16 MiB) whatever the shard size. An Arrow shard holds one record
 * batch per block and a Parquet shard one row group per block, so the loader reads and decodes one
 * block at a time (and holds only the blocks it needs), never a whole shard.
 *
 * The index entry of a shard with more than one block records `blockRows` and `blockDialogues`
 * (dialogues per block): the loader's order is computed from them without reading any file. An
 * entry without them is one block (shards written before blocks existed, and small shards).
 */
import { Table } from 'apache-arrow';
import type { FeatureSchema, ShardEntry, VideoRow } from './schema.js';
import { estimateRowBytes, rowsToTable } from './arrow-table.js';

/** Default bound on a block's Arrow bytes (its decoded float32 features are about twice that for float16). */
export const DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024;

/**
 * Rows per block for these rows: at most as many of the largest row as fit in `blockBytes` (at
 * least 1), evened out over the blocks that takes (1175 rows of at most 581 give 3 blocks of 392,
 * not 581 + 581 + 13).
 */
export function blockRowsFor(rows: readonly VideoRow[], schema: FeatureSchema, blockBytes = DEFAULT_BLOCK_BYTES): number {
  if (!(blockBytes > 0)) throw new RangeError(`shard: blockBytes must be > 0, found ${blockBytes}`);
  let largest = 1;
  for (const row of rows) largest = Math.max(largest, estimateRowBytes(row, schema.dtype));
  const most = Math.max(1, Math.floor(blockBytes / largest));
  if (rows.length <= most) return most;
  return Math.ceil(rows.length / Math.ceil(rows.length / most));
}

/** Dialogues in each block of `blockRows` rows. */
export function blockDialoguesOf(rows: readonly VideoRow[], blockRows: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < rows.length; start += blockRows) {
    let n = 0;
    for (let r = start; r < Math.min(rows.length, start + blockRows); r++) n += rows[r]!.dialogues.length;
    out.push(n);
  }
  return out;
}

/** The rows as one Arrow table with one record batch per block. */
export function blockedTable(rows: readonly VideoRow[], schema: FeatureSchema, blockRows: number): Table {
  if (rows.length <= blockRows) return rowsToTable(rows, schema);
  const batches = [];
  for (let start = 0; start < rows.length; start += blockRows) batches.push(...rowsToTable(rows.slice(start, start + blockRows), schema).batches);
  return new Table(batches);
}

/** A shard's blocks as the loader uses them: rows and dialogues of each, and where each starts. */
export interface ShardBlocks {
  count: number;
  rows: number[];
  dialogues: number[];
  /** First row and first dialogue (sample) of each block, plus the totals at the end. */
  firstRow: number[];
  firstDialogue: number[];
}

/** The blocks of an index entry (one block when the entry lists none). */
export function shardBlocks(entry: ShardEntry): ShardBlocks {
  const dialogues = entry.blockDialogues ?? [entry.dialogues];
  const blockRows = entry.blockRows ?? entry.rows;
  const rows = dialogues.map((_, b) => Math.min(blockRows, entry.rows - b * blockRows));
  const firstRow = [0];
  const firstDialogue = [0];
  for (let b = 0; b < dialogues.length; b++) {
    firstRow.push(firstRow[b]! + rows[b]!);
    firstDialogue.push(firstDialogue[b]! + dialogues[b]!);
  }
  return { count: dialogues.length, rows, dialogues, firstRow, firstDialogue };
}

/** Why an entry's block fields are inconsistent with its rows and dialogues, or null. */
export function blockProblem(entry: { rows: number; dialogues: number; blockRows?: unknown; blockDialogues?: unknown }): string | null {
  const { blockRows, blockDialogues } = entry;
  if (blockRows === undefined && blockDialogues === undefined) return null;
  if (!Number.isInteger(blockRows) || (blockRows as number) < 1) return `blockRows: expected an integer >= 1, found ${JSON.stringify(blockRows)}`;
  if (!Array.isArray(blockDialogues) || !blockDialogues.every((n) => Number.isInteger(n) && n >= 0)) return 'blockDialogues: expected an array of integers >= 0';
  const expected = Math.max(1, Math.ceil(entry.rows / (blockRows as number)));
  if (blockDialogues.length !== expected) return `blockDialogues: ${blockDialogues.length} blocks, but ${entry.rows} rows in blocks of ${blockRows as number} make ${expected}`;
  const sum = (blockDialogues as number[]).reduce((a, b) => a + b, 0);
  if (sum !== entry.dialogues) return `blockDialogues: add up to ${sum}, the entry says ${entry.dialogues} dialogues`;
  return null;
}
