/**
 * Structural checks of an Arrow IPC file before arrow-js decodes it. arrow-js trusts the
 * flatbuffer metadata: a damaged vector length (fields, buffers, nodes) makes it loop or allocate
 * for minutes, which in a loader worker is a hang. These checks bound every count and offset by
 * the bytes that hold them, so a damaged file fails at once with a message; the sha256 in the
 * index remains the full integrity check.
 */
import * as flatbuffers from 'flatbuffers';
import { Footer } from 'apache-arrow/fb/footer';
import { Message } from 'apache-arrow/fb/message';
import { MessageHeader } from 'apache-arrow/fb/message-header';
import { RecordBatch } from 'apache-arrow/fb/record-batch';
import type { Field } from 'apache-arrow/fb/field';

/** Throws an Error saying what is out of bounds; returns when the framing is sound. */
export function checkArrowFile(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const footerLength = view.getInt32(bytes.length - 10, true);
  const footerStart = bytes.length - 10 - footerLength;
  if (footerLength <= 0 || footerStart < 8) throw new Error(`footer length ${footerLength} does not fit in a ${bytes.length}-byte file`);
  const footer = checkFooter(bytes.subarray(footerStart, footerStart + footerLength));
  for (let b = 0; b < footer.recordBatchesLength(); b++) {
    const { offset, metaLength, bodyLength } = blockOf(footer, b, footerStart);
    checkRecordBatch(bytes.subarray(offset, offset + metaLength + bodyLength), b, metaLength, bodyLength);
  }
}

/** The footer (its counts bounded by its own bytes, its schema's fields walked); throws when damaged. */
export function checkFooter(footerBytes: Uint8Array): Footer {
  const footerLength = footerBytes.length;
  const footer = Footer.getRootAsFooter(new flatbuffers.ByteBuffer(footerBytes));
  const blocks = footer.recordBatchesLength();
  if (blocks < 0 || blocks * 24 > footerLength) throw new Error(`footer lists ${blocks} record batches, more than ${footerLength} footer bytes can hold`);
  if (footer.dictionariesLength() !== 0) throw new Error('dictionary batches are not part of the shard format');
  const schema = footer.schema();
  if (!schema) throw new Error('footer has no schema');
  let budget = Math.floor(footerLength / 4); // every field takes at least 4 bytes of footer
  const checkFields = (count: number, at: (i: number) => Field | null, where: string) => {
    if (count < 0 || count > budget) throw new Error(`${where} lists ${count} fields, more than the footer can hold`);
    budget -= count;
    for (let i = 0; i < count; i++) {
      const field = at(i);
      if (!field) throw new Error(`${where} field ${i} is unreadable`);
      checkFields(field.childrenLength(), (j) => field.children(j), `${where}.${field.name() ?? i}`);
    }
  };
  checkFields(schema.fieldsLength(), (i) => schema.fields(i), 'schema');
  return footer;
}

/** Record batch `b`'s place in the file, checked to lie before the footer (`footerStart`). */
export function blockOf(footer: Footer, b: number, footerStart: number): { offset: number; metaLength: number; bodyLength: number } {
  const block = footer.recordBatches(b);
  if (!block) throw new Error(`record batch ${b}: unreadable block`);
  const offset = Number(block.offset());
  const metaLength = block.metaDataLength();
  const bodyLength = Number(block.bodyLength());
  if (!(offset >= 8 && metaLength >= 8 && bodyLength >= 0 && offset + metaLength + bodyLength <= footerStart)) {
    throw new Error(`record batch ${b}: block [offset ${offset}, metadata ${metaLength}, body ${bodyLength}] lies outside the file's ${footerStart} data bytes`);
  }
  return { offset, metaLength, bodyLength };
}

/** Checks record batch `b`'s bytes (its metadata message, then its body): counts and buffers within bounds. */
export function checkRecordBatch(bytes: Uint8Array, b: number, metaLength: number, bodyLength: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  if (view.getInt32(pos, true) === -1) pos += 4; // continuation marker
  const length = view.getInt32(pos, true);
  pos += 4;
  if (!(length > 0 && pos + length <= metaLength)) throw new Error(`record batch ${b}: metadata length ${length} exceeds its block (${metaLength} bytes)`);
  const message = Message.getRootAsMessage(new flatbuffers.ByteBuffer(bytes.subarray(pos, pos + length)));
  if (message.headerType() !== MessageHeader.RecordBatch) throw new Error(`record batch ${b}: message is not a record batch`);
  if (Number(message.bodyLength()) !== bodyLength) throw new Error(`record batch ${b}: body length ${message.bodyLength()} differs from its block's ${bodyLength}`);
  const header = message.header(new RecordBatch()) as RecordBatch | null;
  if (!header) throw new Error(`record batch ${b}: no header`);
  const nodes = header.nodesLength();
  const buffers = header.buffersLength();
  if (nodes < 0 || nodes * 16 > length || buffers < 0 || buffers * 16 > length) {
    throw new Error(`record batch ${b}: ${nodes} nodes and ${buffers} buffers do not fit in ${length} bytes of metadata`);
  }
  for (let i = 0; i < buffers; i++) {
    const buf = header.buffers(i);
    const start = Number(buf?.offset() ?? -1);
    const len = Number(buf?.length() ?? -1);
    if (!(start >= 0 && len >= 0 && start + len <= bodyLength)) throw new Error(`record batch ${b}: buffer ${i} [${start}, +${len}] lies outside its ${bodyLength}-byte body`);
  }
}
