/**
 * NumPy `.npy` files (format versions 1.0, 2.0 and 3.0): the magic `\x93NUMPY`, a version, a
 * little-endian header length (2 bytes in 1.0, 4 after), a Python-literal header dict
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (16, 768), }` padded so the data starts
 * 64-byte aligned, then the raw array. rpv reads float arrays (f2, f4, f8, either byte order) in
 * C order into Float32Array, and writes float32 or float16.
 */
import { RpvError } from '../util/errors.js';
import { fromFloat16Bits, toFloat16Bits } from '../util/float16.js';

export type NpyDType = 'float16' | 'float32' | 'float64';

export interface NpyArray {
  dtype: NpyDType;
  shape: number[];
  data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const DESCR: Record<string, { dtype: NpyDType; bytes: number }> = {
  f2: { dtype: 'float16', bytes: 2 },
  f4: { dtype: 'float32', bytes: 4 },
  f8: { dtype: 'float64', bytes: 8 },
};

/** Parse `.npy` bytes; `where` names the file in errors. */
export function parseNpy(bytes: Uint8Array, where: string): NpyArray {
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) throw new RpvError(`${where}: not a .npy file (no \\x93NUMPY magic)`);
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new RpvError(`${where}: .npy header cut short`);
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw new RpvError(`${where}: unsupported .npy format version ${major}.${bytes[7]} (rpv reads 1.0, 2.0 and 3.0)`);
  }
  if (start + headerLen > bytes.length) throw new RpvError(`${where}: .npy header length ${headerLen} exceeds the file's ${bytes.length} bytes`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new RpvError(`${where}: .npy header is missing descr, fortran_order or shape: ${header.trim()}`);
  }
  const order = descr[0];
  const kind = DESCR[descr.slice(1)];
  // '=' is native order: little-endian on every platform Node runs on here.
  if (!kind || !(order === '<' || order === '>' || order === '=')) {
    throw new RpvError(`${where}: dtype ${descr} is not supported: expected float16 or float32 ('<f2', '<f4'; '<f8' is converted)`);
  }
  if (fortran === 'True') throw new RpvError(`${where}: Fortran-ordered arrays are not supported; save with np.save(f, np.ascontiguousarray(a))`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s.replace(/L$/, '')));
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new RpvError(`${where}: bad shape (${shapeText}) in the .npy header`);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  const need = count * kind.bytes;
  if (bytes.length - dataStart < need) {
    throw new RpvError(`${where}: ${descr} array of shape (${shape.join(', ')}) needs ${need} data bytes, the file has ${bytes.length - dataStart} (truncated?)`);
  }
  const little = order !== '>';
  const data = new Float32Array(count);
  const base = dataStart;
  if (kind.dtype === 'float32') for (let i = 0; i < count; i++) data[i] = view.getFloat32(base + 4 * i, little);
  else if (kind.dtype === 'float64') for (let i = 0; i < count; i++) data[i] = view.getFloat64(base + 8 * i, little);
  else for (let i = 0; i < count; i++) data[i] = fromFloat16Bits(view.getUint16(base + 2 * i, little));
  return { dtype: kind.dtype, shape, data };
}

/** Serialise a C-ordered array as `.npy` 1.0 (float32 or float16, little-endian). */
export function encodeNpy(data: ArrayLike<number>, shape: number[], dtype: 'float32' | 'float16' = 'float32'): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new RpvError(`npy: shape (${shape.join(', ')}) holds ${count} values, data has ${data.length}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${dtype === 'float32' ? '<f4' : '<f2'}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad with spaces and end with \n so magic + version + length + header is a multiple of 64.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const bytesPer = dtype === 'float32' ? 4 : 2;
  const out = new Uint8Array(total + count * bytesPer);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  for (let i = 0; i < count; i++) {
    if (dtype === 'float32') view.setFloat32(total + 4 * i, data[i]!, true);
    else view.setUint16(total + 2 * i, toFloat16Bits(data[i]!), true);
  }
  return out;
}

