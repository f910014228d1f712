/**
 * safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian header
 * length N, a JSON header of N bytes (`{"__metadata__": {...}, name: {dtype, shape, data_offsets}}`),
 * then the raw little-endian tensor bytes. Floating-point tensors (F32, F16, BF16, F64) decode to
 * Float32Array; integer tensors (I32, I64, U8, ...) to Int32Array where they fit.
 *
 * Writing follows the reference implementation: tensors ordered by dtype size then name so each
 * tensor starts aligned to its element size, and the header padded with spaces to a multiple of
 * 8 bytes so the data section starts 8-byte aligned.
 */
import { promises as fs } from 'node:fs';
import { RpvError } from './errors.js';
import { float16ToFloat32, toFloat16Bits } from './float16.js';
import { firstNonFinite, firstNonFiniteBits, nonFiniteValueOfBits } from './finite.js';
import path from 'node:path';
import { releaseTemp, tempPathFor, trackTemp, writeFileAtomic } from './atomic.js';

/** dtypes rpv decodes. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
/** dtypes rpv writes floating-point tensors as. */
export type SafetensorsFloatDType = 'F32' | 'F16' | 'BF16';

const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** One tensor as read: its stored dtype and shape, values decoded to 32 bits. */
export interface SafetensorsTensor {
  /** dtype on disk. */
  dtype: SafetensorsDType;
  shape: number[];
  /** Decoded values: Float32Array for float dtypes, Int32Array for integer and bool dtypes. */
  data: Float32Array | Int32Array;
}

/** Header entry of one tensor. */
export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the data section, [begin, end). */
  dataOffsets: [number, number];
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  /** `__metadata__` string map ({} when absent). */
  metadata: Record<string, string>;
}

/** A tensor to write: float data is converted to `dtype` (default from the write options). */
export interface SafetensorsInput {
  shape: number[];
  data: Float32Array | Int32Array;
  /** Output dtype for this tensor; default: the writer's `dtype` for floats, I32 for Int32Array. */
  dtype?: SafetensorsFloatDType | 'I32';
}

export interface WriteSafetensorsOptions {
  /** `__metadata__` (string values only, as the format requires). */
  metadata?: Record<string, string>;
  /** dtype of float tensors without their own; default F32. */
  dtype?: SafetensorsFloatDType;
}

/** Largest header rpv accepts, as the reference implementation (100 MB) does, so a corrupt length cannot make us allocate gigabytes. */
const MAX_HEADER_BYTES = 100_000_000;

// ---------------------------------------------------------------------------------------------
// Float16 / BFloat16 conversion

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half bits, round to nearest even (as numpy and torch do). */
export { toFloat16Bits as floatToHalfBits } from './float16.js';

/** float32 -> bfloat16 bits, round to nearest even; NaN stays NaN. */
export function floatToBFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function decode(bytes: Uint8Array, dtype: SafetensorsDType, count: number): Float32Array | Int32Array {
  // Typed-array views need element alignment; copy the (rare) unaligned slice.
  const size = DTYPE_BYTES[dtype];
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const buf = aligned.buffer;
  const off = aligned.byteOffset;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf.slice(off, off + count * 4));
    case 'F64':
      return Float32Array.from(new Float64Array(buf, off, count));
    case 'F16': {
      return float16ToFloat32(new Uint16Array(buf, off, count));
    }
    case 'BF16': {
      const src = new Uint16Array(buf, off, count);
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = src[i] << 16;
      return out;
    }
    case 'I32':
      return new Int32Array(buf.slice(off, off + count * 4));
    case 'I16':
      return Int32Array.from(new Int16Array(buf, off, count));
    case 'I8':
      return Int32Array.from(new Int8Array(buf, off, count));
    case 'U8':
    case 'BOOL':
      return Int32Array.from(new Uint8Array(buf, off, count));
    case 'I64': {
      const src = new BigInt64Array(buf, off, count);
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = Number(src[i]);
      return out;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Parse and validate a header; `where` names the file in errors. */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  dataBytes: number,
  where: string,
): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new RpvError(`${where}: safetensors header is not valid JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    throw new RpvError(`${where}: safetensors header: expected a JSON object`);
  }
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v?.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) {
      throw new RpvError(`${where}: tensor ${name}: unsupported dtype ${JSON.stringify(v?.dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const dtype = v.dtype as SafetensorsDType;
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new RpvError(`${where}: tensor ${name}: shape must be a list of non-negative integers, found ${JSON.stringify(v.shape)}`);
    }
    const offsets = v.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isInteger(d) && d >= 0) || offsets[0] > offsets[1]) {
      throw new RpvError(`${where}: tensor ${name}: data_offsets must be [begin, end], found ${JSON.stringify(offsets)}`);
    }
    const shape = v.shape as number[];
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (offsets[1] - offsets[0] !== expected) {
      throw new RpvError(`${where}: tensor ${name}: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes, data_offsets span ${offsets[1] - offsets[0]}`);
    }
    if (offsets[1] > dataBytes) {
      throw new RpvError(`${where}: tensor ${name}: data_offsets end ${offsets[1]} beyond the ${dataBytes}-byte data section (file truncated?)`);
    }
    entries.set(name, { dtype, shape, dataOffsets: [offsets[0], offsets[1]] });
  }
  return { entries, metadata };
}

function headerLength(prefix: Uint8Array, fileBytes: number, where: string): number {
  if (fileBytes < 8) throw new RpvError(`${where}: not a safetensors file: ${fileBytes} bytes, shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new RpvError(`${where}: safetensors header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`);
  if (Number(n) + 8 > fileBytes) throw new RpvError(`${where}: safetensors header length ${n} exceeds the file's ${fileBytes} bytes`);
  return Number(n);
}

/**
 * A safetensors file opened for reading tensor by tensor, so a multi-gigabyte checkpoint never
 * has to be in memory twice.
 */
export class SafetensorsReader {
  private constructor(
    readonly file: string,
    readonly entries: Map<string, SafetensorsEntry>,
    readonly metadata: Record<string, string>,
    private readonly dataStart: number,
    private readonly handle: fs.FileHandle,
  ) {}

  static async open(file: string): Promise<SafetensorsReader> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      throw new RpvError(`${file}: cannot open: ${(err as Error).message}`);
    }
    try {
      const { size } = await handle.stat();
      const prefix = new Uint8Array(8);
      await handle.read(prefix, 0, Math.min(8, size), 0);
      const n = headerLength(prefix, size, file);
      const header = new Uint8Array(n);
      await handle.read(header, 0, n, 8);
      const { entries, metadata } = parseSafetensorsHeader(header, size - 8 - n, file);
      return new SafetensorsReader(file, entries, metadata, 8 + n, handle);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** Names in file order. */
  get names(): string[] {
    return [...this.entries.keys()];
  }

  /** Where a tensor's bytes lie in the file (absolute byte offset), for reading them in place. */
  location(name: string): { dtype: SafetensorsDType; shape: number[]; byteOffset: number; byteLength: number } {
    const entry = this.entries.get(name);
    if (!entry) throw new RpvError(`${this.file}: no tensor named ${name}`);
    const [begin, end] = entry.dataOffsets;
    return { dtype: entry.dtype, shape: entry.shape, byteOffset: this.dataStart + begin, byteLength: end - begin };
  }

  /** Read and decode one tensor. */
  async read(name: string): Promise<SafetensorsTensor> {
    const entry = this.entries.get(name);
    if (!entry) throw new RpvError(`${this.file}: no tensor named ${name}`);
    const [begin, end] = entry.dataOffsets;
    const bytes = new Uint8Array(end - begin);
    if (bytes.length) await this.handle.read(bytes, 0, bytes.length, this.dataStart + begin);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    return { dtype: entry.dtype, shape: entry.shape, data: decode(bytes, entry.dtype, count) };
  }

  /**
   * Read `out.length` stored bytes of a tensor, from byte `at` of its data, into `out`: a tensor
   * streamed through a small buffer instead of decoded whole.
   */
  async readBytes(name: string, at: number, out: Uint8Array): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) throw new RpvError(`${this.file}: no tensor named ${name}`);
    const [begin, end] = entry.dataOffsets;
    if (at < 0 || begin + at + out.length > end) throw new RpvError(`${this.file}: tensor ${name}: bytes [${at}, ${at + out.length}) beyond its ${end - begin}`);
    for (let done = 0; done < out.length; ) {
      const { bytesRead } = await this.handle.read(out, done, out.length - done, this.dataStart + begin + at + done);
      if (bytesRead === 0) throw new RpvError(`${this.file}: tensor ${name}: file ends inside its data (truncated while read?)`);
      done += bytesRead;
    }
  }

  /**
   * The first NaN or infinite value of a float tensor (F32, F16, BF16: on its stored bits; F64
   * decoded), read in chunks of `chunkBytes` (the next chunk is read while one is scanned); null
   * when every value is finite or the dtype is not a float.
   */
  async findNonFinite(name: string, chunkBytes = 1 << 23): Promise<{ index: number; count: number; value: number } | null> {
    const entry = this.entries.get(name);
    if (!entry) throw new RpvError(`${this.file}: no tensor named ${name}`);
    const dtype = entry.dtype;
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') return null;
    const size = DTYPE_BYTES[dtype];
    const [begin, end] = entry.dataOffsets;
    const count = (end - begin) / size;
    const chunk = Math.max(size, Math.min(end - begin, chunkBytes - (chunkBytes % 8)));
    const buffers = [new Uint8Array(chunk), new Uint8Array(end - begin > chunk ? chunk : 0)];
    const readAt = async (at: number, buf: Uint8Array) => {
      const bytes = buf.subarray(0, Math.min(chunk, end - at));
      await this.handle.read(bytes, 0, bytes.length, this.dataStart + at);
      return bytes;
    };
    let next = begin < end ? readAt(begin, buffers[0]!) : null;
    for (let at = begin, k = 0; next; at += chunk, k++) {
      const bytes = await next;
      next = at + chunk < end ? readAt(at + chunk, buffers[(k + 1) % 2]!) : null;
      const first = (at - begin) / size;
      let i: number;
      let value: number;
      if (dtype === 'F64') {
        const values = new Float64Array(bytes.buffer, 0, bytes.length / 8);
        i = firstNonFinite(values);
        value = values[i]!;
      } else {
        i = firstNonFiniteBits(bytes, dtype);
        value = i >= 0 ? nonFiniteValueOfBits(bytes, dtype, i) : 0;
      }
      if (i >= 0) {
        await next;
        return { index: first + i, count, value };
      }
    }
    return null;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Read a whole safetensors file (a path, or its bytes) and decode every tensor. */
export async function readSafetensors(source: string | Uint8Array, where = 'safetensors'): Promise<SafetensorsFile> {
  if (typeof source === 'string') {
    const reader = await SafetensorsReader.open(source);
    try {
      const tensors = new Map<string, SafetensorsTensor>();
      for (const name of reader.names) tensors.set(name, await reader.read(name));
      return { tensors, metadata: reader.metadata };
    } finally {
      await reader.close();
    }
  }
  return decodeSafetensors(source, where);
}

/** Decode safetensors bytes held in memory. */
export function decodeSafetensors(bytes: Uint8Array, where = 'safetensors'): SafetensorsFile {
  const n = headerLength(bytes, bytes.length, where);
  const { entries, metadata } = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length - 8 - n, where);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, e] of entries) {
    const count = e.shape.reduce((a, b) => a * b, 1);
    const slice = bytes.subarray(8 + n + e.dataOffsets[0], 8 + n + e.dataOffsets[1]);
    tensors.set(name, { dtype: e.dtype, shape: e.shape, data: decode(slice, e.dtype, count) });
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Writing

function encode(t: SafetensorsInput, dtype: SafetensorsFloatDType | 'I32', name: string): Uint8Array {
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) {
    throw new RpvError(`safetensors: tensor ${name}: shape ${JSON.stringify(t.shape)} holds ${count} values, data has ${t.data.length}`);
  }
  if (dtype === 'I32') {
    if (!(t.data instanceof Int32Array)) throw new RpvError(`safetensors: tensor ${name}: I32 output needs Int32Array data`);
    return new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
  }
  const data = t.data;
  if (dtype === 'F32') {
    const out = data instanceof Float32Array ? data.slice() : Float32Array.from(data);
    return new Uint8Array(out.buffer);
  }
  const out = new Uint16Array(count);
  const conv = dtype === 'F16' ? toFloat16Bits : floatToBFloat16Bits;
  for (let i = 0; i < count; i++) out[i] = conv(data[i]);
  return new Uint8Array(out.buffer);
}

/** Serialise tensors to safetensors bytes. */
export function encodeSafetensors(
  tensors: Map<string, SafetensorsInput> | Record<string, SafetensorsInput>,
  { metadata, dtype = 'F32' }: WriteSafetensorsOptions = {},
): Uint8Array {
  const list = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).map(([name, t]) => {
    const outType = t.dtype ?? (t.data instanceof Int32Array ? 'I32' : dtype);
    return { name, t, outType };
  });
  // Larger elements first, then by name: every tensor stays aligned to its element size.
  list.sort((a, b) => DTYPE_BYTES[b.outType] - DTYPE_BYTES[a.outType] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new RpvError(`safetensors: metadata ${k}: values must be strings, found ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const { name, t, outType } of list) {
    const bytes = encode(t, outType, name);
    header[name] = { dtype: outType, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  const jsonBytes = new TextEncoder().encode(json);
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  json += ' '.repeat(padded - jsonBytes.length);
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(new TextEncoder().encode(json), 8);
  let pos = 8 + padded;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

/** Write tensors to `file` atomically. */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, SafetensorsInput> | Record<string, SafetensorsInput>,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, options));
}

/**
 * One tensor of a streamed file; its values arrive in chunks from `fill` (float32 values,
 * converted to `dtype` by the writer) or `fillBytes` (bytes as written, e.g. copied unchanged
 * from another file; the only way for I32). Either may be async; throwing aborts the file.
 */
export interface SafetensorsStreamTensor {
  name: string;
  shape: number[];
  dtype: SafetensorsFloatDType | 'I32';
  /** Fills `out` with the tensor's next out.length values (called in order until it is complete; a returned promise is awaited). */
  fill?: (out: Float32Array) => unknown;
  /** Fills `out` with the tensor's next out.length bytes in `dtype`, little-endian (whole elements; a returned promise is awaited). */
  fillBytes?: (out: Uint8Array) => unknown;
}

export interface StreamSafetensorsOptions {
  metadata?: Record<string, string>;
  /** Values converted and written per write (default 4M). */
  chunkElements?: number;
  /** Called after each write with the bytes just written (progress). */
  onBytes?: (bytes: number) => void;
  /** Called once each tensor is written (empty ones too), in file order. */
  onTensor?: (name: string) => void;
}

/** Bytes a streamed file of these tensors takes (header included), to plan shards. */
export function safetensorsDataBytes(shape: number[], dtype: SafetensorsFloatDType | 'I32'): number {
  return shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
}

/**
 * Write a safetensors file tensor by tensor, chunk by chunk, never holding a whole tensor in
 * memory: for multi-gigabyte checkpoints. Same layout as encodeSafetensors (larger elements
 * first, then by name; header padded to 8 bytes). Atomic: a temporary file is renamed over
 * `file` once complete and synced.
 */
export async function writeSafetensorsStreaming(file: string, tensors: SafetensorsStreamTensor[], { metadata, chunkElements = 1 << 22, onBytes, onTensor }: StreamSafetensorsOptions = {}): Promise<number> {
  for (const t of tensors) {
    if (!t.fill === !t.fillBytes) throw new RpvError(`safetensors: tensor ${t.name}: give fill or fillBytes, not ${t.fill ? 'both' : 'neither'}`);
    if (t.dtype === 'I32' && !t.fillBytes) throw new RpvError(`safetensors: tensor ${t.name}: I32 is written from fillBytes`);
  }
  const list = [...tensors].sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of list) {
    const bytes = safetensorsDataBytes(t.shape, t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const jsonBytes = new TextEncoder().encode(json);
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  json += ' '.repeat(padded - jsonBytes.length);
  const prefix = new Uint8Array(8 + padded);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(new TextEncoder().encode(json), 8);
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = tempPathFor(file);
  trackTemp(tmp);
  const handle = await fs.open(tmp, 'w').catch((err: unknown) => {
    releaseTemp(tmp);
    throw err;
  });
  try {
    await handle.write(prefix);
    const values = new Float32Array(chunkElements);
    const halves = new Uint16Array(chunkElements);
    const raw = new Uint8Array(values.buffer);
    for (const t of list) {
      const count = t.shape.reduce((a, b) => a * b, 1);
      if (t.fillBytes) {
        const total = safetensorsDataBytes(t.shape, t.dtype);
        for (let done = 0; done < total; ) {
          const bytes = raw.subarray(0, Math.min(raw.length, total - done));
          await t.fillBytes(bytes);
          await handle.write(bytes);
          onBytes?.(bytes.length);
          done += bytes.length;
        }
        onTensor?.(t.name);
        continue;
      }
      for (let done = 0; done < count; ) {
        const n = Math.min(chunkElements, count - done);
        const chunk = values.subarray(0, n);
        await t.fill!(chunk);
        let bytes: Uint8Array;
        if (t.dtype === 'F32') bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, n * 4);
        else {
          const conv = t.dtype === 'F16' ? toFloat16Bits : floatToBFloat16Bits;
          for (let i = 0; i < n; i++) halves[i] = conv(chunk[i]);
          bytes = new Uint8Array(halves.buffer, 0, n * 2);
        }
        await handle.write(bytes);
        onBytes?.(bytes.length);
        done += n;
      }
      onTensor?.(t.name);
    }
    await handle.sync();
    await handle.close();
    await fs.rename(tmp, file);
  } catch (err) {
    await handle.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw err;
  } finally {
    releaseTemp(tmp);
  }
  return prefix.length + offset;
}
