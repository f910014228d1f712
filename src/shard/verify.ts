/**
 * Checking a shard's bytes as they are read, against the hashes its index entry lists.
 *
 * A shard of several blocks (blocks.ts) is verified block by block: the writer records where each
 * block's bytes lie (`blockOffsets`: one record batch, or one Parquet row group, per block), the
 * sha256 of each block's bytes (`blockSha256`), and the sha256 of the bytes outside the blocks
 * (`headTailSha256`: the head before the first block, then the tail after the last: schema,
 * footer, Parquet page indexes). A reader of one block hashes the head, the tail and that block,
 * the only bytes it reads, so no file is read twice to be checked. A shard of one block, or one
 * whose entry has only the whole-file `sha256` (written before block hashes existed), is checked
 * whole: when it is read whole, as its bytes are read; when its blocks are read, by one pass
 * over the file before the first block (./source.ts).
 *
 * sha256 through Node's crypto (OpenSSL, with the CPU's SHA instructions where present): 1.45 GB/s
 * on one idle core of the development machine, against 1.74 for sha1 (broken), 1.24 for blake2b512,
 * 0.95 for sha512 and 0.69 for md5. zlib's crc32 (5.6 GB/s) exists only since Node 20.15 / 22.2
 * and is no content identity; sha256 is also what the index lists for whole files and what the
 * shard cache names files by. Its cost on the loader is measured by bench/loader.ts (+21% of the
 * workers' CPU on Arrow, +5% on Parquet: src/loader/README.md#benchmark).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { checkFooter, blockOf } from './arrow-check.js';
import type { ShardFileFormat } from './schema.js';

/** The index fields of a shard of several blocks that locate and check each block's bytes. */
export interface BlockHashes {
  /** Byte offset of each block's first byte, then the end of the last block (blocks + 1 values). */
  blockOffsets: number[];
  /** sha256 (hex) of each block's bytes. */
  blockSha256: string[];
  /** sha256 (hex) of the head [0, blockOffsets[0]) followed by the tail [blockOffsets[last], size). */
  headTailSha256: string;
}

/** What one block read checks: its byte range and hash, and the head and tail around every block. */
export interface BlockCheck {
  /** [start, end) of the block's bytes. */
  start: number;
  end: number;
  sha256: string;
  /** End of the head (the first block's start) and start of the tail (the last block's end). */
  headEnd: number;
  tailStart: number;
  headTailSha256: string;
}

/** Thrown when bytes read differ from what the index lists; its message is the one-line report. */
export class ShardChecksumError extends Error {
  readonly code = 'RPV_SHARD_CHECKSUM';
  constructor(message: string) {
    super(message);
    this.name = 'ShardChecksumError';
  }
}

/** What to do about a local (or cached) file whose bytes differ from the index. */
export const LOCAL_ADVICE =
  'the bytes differ from those index.json lists (the file was damaged or changed after it was written); re-download or re-convert this shard (rpv inspect --verify checks every shard)';
/** The same for a download: the server's copy is the bad one. */
export const REMOTE_ADVICE =
  "the bytes differ from those index.json lists (the server's copy was damaged or changed after it was written); upload or re-convert this shard (rpv inspect --verify checks every shard)";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The block hash fields of an index entry, or undefined when it has none (one block, or an older index). */
export function blockHashesOf(entry: Partial<BlockHashes>): BlockHashes | undefined {
  const { blockOffsets, blockSha256, headTailSha256 } = entry;
  return blockOffsets && blockSha256 && headTailSha256 ? { blockOffsets, blockSha256, headTailSha256 } : undefined;
}

/** What reading block `b` of a shard with these hashes checks. */
export function blockCheckOf(hashes: BlockHashes, b: number): BlockCheck {
  const offsets = hashes.blockOffsets;
  return {
    start: offsets[b]!,
    end: offsets[b + 1]!,
    sha256: hashes.blockSha256[b]!,
    headEnd: offsets[0]!,
    tailStart: offsets[offsets.length - 1]!,
    headTailSha256: hashes.headTailSha256,
  };
}

/** `block 2 of 3 (bytes 1048-2095)`: a block as messages name it (bytes inclusive). */
export function blockLabel(b: number, count: number, start: number, end: number): string {
  return `block ${b + 1} of ${count} (bytes ${start}-${end - 1})`;
}

/** `head and tail (bytes 0-399 and 9000-9999)`: the bytes outside the blocks. */
export function headTailLabel(headEnd: number, tailStart: number, size: number): string {
  return `head and tail (bytes 0-${headEnd - 1} and ${tailStart}-${size - 1})`;
}

/** Throws ShardChecksumError naming `what` unless sha256(`parts`) is `expected`. */
export function checkHash(parts: readonly Uint8Array[], expected: string, what: string, advice = LOCAL_ADVICE): void {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  if (h.digest('hex') !== expected) throw new ShardChecksumError(`${what}: sha256 mismatch: ${advice}`);
}

/**
 * Why a whole shard's `bytes` are not those its entry lists, or undefined when they are. On a
 * mismatch, an entry with block hashes names the first part that differs (a block or the head
 * and tail); otherwise the whole file is named.
 */
export function shardBytesProblem(bytes: Uint8Array, entry: { bytes: number; sha256: string } & Partial<BlockHashes>, advice = LOCAL_ADVICE): string | undefined {
  if (sha256Hex(bytes) === entry.sha256) return undefined;
  const hashes = blockHashesOf(entry);
  if (hashes && bytes.length === entry.bytes) {
    const where = firstBadPart(bytes, hashes);
    if (where) return `${where}: sha256 mismatch: ${advice}`;
  }
  return `whole file (bytes 0-${bytes.length - 1}): sha256 mismatch: ${advice}`;
}

/** The first part of `bytes` (a block, or the head and tail) whose hash differs from `hashes`, or undefined. */
export function firstBadPart(bytes: Uint8Array, hashes: BlockHashes): string | undefined {
  const offsets = hashes.blockOffsets;
  const count = offsets.length - 1;
  const head = bytes.subarray(0, offsets[0]);
  const tail = bytes.subarray(offsets[count]);
  if (createHash('sha256').update(head).update(tail).digest('hex') !== hashes.headTailSha256) return headTailLabel(offsets[0]!, offsets[count]!, bytes.length);
  for (let b = 0; b < count; b++) {
    if (sha256Hex(bytes.subarray(offsets[b], offsets[b + 1])) !== hashes.blockSha256[b]) return blockLabel(b, count, offsets[b]!, offsets[b + 1]!);
  }
  return undefined;
}

/**
 * Where each block of a shard file's bytes lies: the record batches of an Arrow IPC file, the row
 * groups of a Parquet file (blocks + 1 offsets), checked to follow one another with nothing
 * between them. Null when they do not (a file this writer did not make): its entry then gets no
 * block hashes and is checked whole.
 */
export async function blockOffsetsOf(bytes: Uint8Array, format: ShardFileFormat): Promise<number[] | null> {
  const ranges = format === 'arrow' ? arrowBatchRanges(bytes) : await parquetRowGroupRanges(bytes);
  if (ranges.length === 0) return null;
  const offsets = [ranges[0]![0]];
  for (let b = 0; b < ranges.length; b++) {
    if (ranges[b]![0] !== offsets[b]) return null;
    offsets.push(ranges[b]![1]);
  }
  return offsets[offsets.length - 1]! <= bytes.length ? offsets : null;
}

/** The block hash fields of a shard file of several blocks (what the writer records), or undefined. */
export async function computeBlockHashes(bytes: Uint8Array, format: ShardFileFormat): Promise<BlockHashes | undefined> {
  const offsets = await blockOffsetsOf(bytes, format);
  if (!offsets || offsets.length < 3) return undefined;
  const blockSha256: string[] = [];
  for (let b = 0; b + 1 < offsets.length; b++) blockSha256.push(sha256Hex(bytes.subarray(offsets[b], offsets[b + 1])));
  const headTailSha256 = createHash('sha256')
    .update(bytes.subarray(0, offsets[0]))
    .update(bytes.subarray(offsets[offsets.length - 1]))
    .digest('hex');
  return { blockOffsets: offsets, blockSha256, headTailSha256 };
}

function arrowBatchRanges(bytes: Uint8Array): [number, number][] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const footerLength = view.getInt32(bytes.length - 10, true);
  const footerStart = bytes.length - 10 - footerLength;
  const footer = checkFooter(bytes.subarray(footerStart, footerStart + footerLength));
  const out: [number, number][] = [];
  for (let b = 0; b < footer.recordBatchesLength(); b++) {
    const { offset, metaLength, bodyLength } = blockOf(footer, b, footerStart);
    out.push([offset, offset + metaLength + bodyLength]);
  }
  return out;
}

const require = createRequire(import.meta.url);
let parquetWasm: typeof import('parquet-wasm') | undefined;

/**
 * Row groups as arrow-rs writes them: one after another from byte 4 (after `PAR1`), each its
 * column chunks' compressed size long; the page indexes and the footer follow the last.
 */
async function parquetRowGroupRanges(bytes: Uint8Array): Promise<[number, number][]> {
  parquetWasm ??= require('parquet-wasm') as typeof import('parquet-wasm');
  const file = await parquetWasm.ParquetFile.fromFile(bytesBlob(bytes));
  const out: [number, number][] = [];
  try {
    const metadata = file.metadata();
    let start = 4;
    for (let g = 0; g < metadata.numRowGroups(); g++) {
      const size = metadata.rowGroup(g).compressedSize();
      out.push([start, start + size]);
      start += size;
    }
  } finally {
    file.free();
  }
  return out;
}

/** What `ParquetFile.fromFile` uses of a Blob, over bytes in memory (no copy until a range is read). */
function bytesBlob(bytes: Uint8Array): Blob {
  const blob = {
    size: bytes.length,
    slice: (a = 0, b = bytes.length) => bytesBlob(bytes.subarray(a, b)),
    arrayBuffer: async () => bytes.slice().buffer,
  };
  return blob as unknown as Blob;
}
