/**
 * Reading one block of a shard file (see src/shard/blocks.ts) without reading the rest of it:
 *
 * - Arrow IPC file: the footer (from the file's tail) locates record batch `b`; the footer's
 *   schema and that batch's bytes are decoded as a two-message IPC stream. The footer, and the batch's metadata and buffers, are bounds-checked first
 *   (src/shard/arrow-check.ts), as for a whole file.
 * - Parquet: parquet-wasm's `ParquetFile` over a Blob-like view of the file, which reads the
 *   footer and row group `b`'s column chunks by byte range.
 *
 * With a `BlockCheck` (the entry's block hashes, ../shard/verify.ts) the bytes are checked as they
 * are read: the head and tail of the file (schema, footer) and the block's own bytes are each read
 * once, hashed, and only then parsed; every read the decoder makes is served from those checked
 * bytes, and a read outside them is an error. A mismatch throws ShardChecksumError naming the
 * block and its byte range.
 *
 * The worker holds the block's bytes and its decoded columns, never the whole file. File calls go
 * through ../shard/callback-fs.js (callback API), never `fs/promises`: see there why.
 */
import { createRequire } from 'node:module';
import { Message, tableFromIPC, type Schema, type Table } from 'apache-arrow';
import { Footer } from 'apache-arrow/ipc/metadata/file';
import * as fs from '../shard/callback-fs.js';
import { blockOf, checkFooter, checkRecordBatch } from '../shard/arrow-check.js';
import type { ShardFileFormat } from '../shard/schema.js';
import { blockLabel, checkHash, headTailLabel, type BlockCheck } from '../shard/verify.js';

const ARROW_MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // ARROW1
const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/** `length` bytes of `fd` from `position` (short only at the end of the file, which is an error here). */
async function readAt(fd: number, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fs.read(fd, out, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`file ends at ${position + done} bytes, ${length - done} bytes short of what its footer describes`);
    done += bytesRead;
  }
  return out;
}

/** Reads `length` bytes from `position` (the file, or bytes already read and checked). */
type ReadAt = (position: number, length: number) => Promise<Uint8Array>;

/**
 * A reader of block `block` of `count` whose reads are served from bytes checked against `check`:
 * the head and tail, then the block, each read once and hashed before anything parses them.
 */
async function checkedReader(fd: number, size: number, block: number, count: number, check: BlockCheck): Promise<ReadAt> {
  const { start, end, headEnd, tailStart } = check;
  if (!(headEnd <= start && start <= end && end <= tailStart && tailStart <= size)) {
    throw new Error(`index.json places it at bytes ${start}-${end - 1}, outside a ${size}-byte file`);
  }
  const head = await readAt(fd, 0, headEnd);
  const tail = await readAt(fd, tailStart, size - tailStart);
  checkHash([head, tail], check.headTailSha256, headTailLabel(headEnd, tailStart, size));
  const body = await readAt(fd, start, end - start);
  checkHash([body], check.sha256, blockLabel(block, count, start, end));
  const parts = [
    { at: 0, bytes: head },
    { at: start, bytes: body },
    { at: tailStart, bytes: tail },
  ];
  return async (position, length) => {
    for (const { at, bytes } of parts) {
      if (position >= at && position + length <= at + bytes.length) return bytes.subarray(position - at, position - at + length);
    }
    throw new Error(
      `the reader asked for bytes ${position}-${position + length - 1}, outside the bytes checked against index.json ` +
        `(0-${headEnd - 1}, ${start}-${end - 1}, ${tailStart}-${size - 1}); the index's block offsets do not fit this file: re-convert the shard`,
    );
  };
}

/** `schema` as an IPC stream's first message: continuation, length, flatbuffer padded to 8 bytes. */
function schemaMessage(schema: Schema): Uint8Array {
  const flatbuffer = Message.encode(Message.from(schema));
  const size = (flatbuffer.byteLength + 8 + 7) & ~7;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, -1, true);
  view.setInt32(4, size - 8, true);
  out.set(flatbuffer, 8);
  return out;
}

/** Where a block read gets its bytes: straight from the file, or checked against the index first. */
async function readerFor(fd: number, size: number, block: number, count: number, check: BlockCheck | undefined): Promise<ReadAt> {
  return check ? checkedReader(fd, size, block, count, check) : (position, length) => readAt(fd, position, length);
}

/**
 * Block `block` of an Arrow IPC shard file of `size` bytes, as a table; `blocks` is how many the
 * footer lists. With `check`, the bytes are checked against the index as they are read.
 */
export async function readArrowBlock(file: string, size: number, block: number, count = 1, check?: BlockCheck): Promise<{ table: Table; blocks: number; bytes: number }> {
  const fd = await fs.open(file, 'r');
  try {
    if (size < 18) throw new Error('not an Arrow IPC file (too short)');
    const read = await readerFor(fd, size, block, count, check);
    const head = await read(0, 8);
    const tail = await read(size - 10, 10);
    for (let i = 0; i < 6; i++) {
      if (head[i] !== ARROW_MAGIC[i] || tail[4 + i] !== ARROW_MAGIC[i]) throw new Error('not an Arrow IPC file (missing ARROW1 magic at start or end)');
    }
    const footerLength = new DataView(tail.buffer, tail.byteOffset, tail.byteLength).getInt32(0, true);
    const footerStart = size - 10 - footerLength;
    if (footerLength <= 0 || footerStart < 8) throw new Error(`footer length ${footerLength} does not fit in a ${size}-byte file`);
    const footerBytes = await read(footerStart, footerLength);
    const footer = checkFooter(footerBytes);
    const blocks = footer.recordBatchesLength();
    if (block >= blocks) return { table: undefined as unknown as Table, blocks, bytes: 0 };
    // The schema is taken from the footer (arrow-js writes no schema message into a file's body).
    const schema = schemaMessage(Footer.decode(footerBytes).schema);
    const { offset, metaLength, bodyLength } = blockOf(footer, block, footerStart);
    const batch = await read(offset, metaLength + bodyLength);
    checkRecordBatch(batch, block, metaLength, bodyLength);
    const stream = new Uint8Array(schema.length + batch.length + EOS.length);
    stream.set(schema, 0);
    stream.set(batch, schema.length);
    stream.set(EOS, schema.length + batch.length);
    return { table: tableFromIPC(stream), blocks, bytes: stream.length };
  } finally {
    await fs.close(fd);
  }
}

const require = createRequire(import.meta.url);
let parquetWasm: typeof import('parquet-wasm') | undefined;

/**
 * What parquet-wasm's `ParquetFile.fromFile` uses of a Blob (`size`, `slice`, `arrayBuffer`), over
 * a file descriptor: each `arrayBuffer()` reads its byte range. Not Node's `fs.openAsBlob`: its
 * reads fail once the file's mtime changes, and the shard cache touches mtimes (LRU).
 */
function rangeBlob(read: ReadAt, start: number, end: number): Blob {
  const blob = {
    size: end - start,
    slice: (a = 0, b = end - start) => rangeBlob(read, start + Math.max(0, a), start + Math.min(Math.max(0, b), end - start)),
    arrayBuffer: async () => {
      const bytes = await read(start, end - start);
      return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    },
  };
  return blob as unknown as Blob;
}

/**
 * Row group `block` of a Parquet shard file of `size` bytes, as a table; `blocks` is how many row
 * groups it has. With `check`, the bytes are checked against the index as they are read.
 */
export async function readParquetBlock(file: string, size: number, block: number, count = 1, check?: BlockCheck): Promise<{ table: Table; blocks: number; bytes: number }> {
  parquetWasm ??= require('parquet-wasm') as typeof import('parquet-wasm');
  const fd = await fs.open(file, 'r');
  try {
    if (size < 12) throw new Error('not a Parquet file (too short)');
    const read = await readerFor(fd, size, block, count, check);
    const parquet = await parquetWasm.ParquetFile.fromFile(rangeBlob(read, 0, size));
    try {
      const blocks = parquet.metadata().numRowGroups();
      if (block >= blocks) return { table: undefined as unknown as Table, blocks, bytes: 0 };
      const ipc = (await parquet.read({ rowGroups: [block] })).intoIPCStream();
      return { table: tableFromIPC(ipc), blocks, bytes: ipc.length };
    } finally {
      parquet.free();
    }
  } finally {
    await fs.close(fd);
  }
}

/**
 * Block `block` of a shard file; throws when the file does not hold `count` blocks as the index
 * says, and with `check` (ShardChecksumError) when the bytes read are not those the index lists.
 */
export async function readBlock(
  file: string,
  format: ShardFileFormat,
  size: number,
  block: number,
  count: number,
  check?: BlockCheck,
): Promise<{ table: Table; bytes: number }> {
  const got = format === 'arrow' ? await readArrowBlock(file, size, block, count, check) : await readParquetBlock(file, size, block, count, check);
  if (got.blocks !== count) {
    throw new Error(`holds ${got.blocks} ${format === 'arrow' ? 'record batches' : 'row groups'}, the index says ${count} blocks`);
  }
  return { table: got.table, bytes: got.bytes };
}
