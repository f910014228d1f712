/**
 * A model folder's identity: a hash that changes when the weights change, not only their shapes,
 * without reading gigabytes. It covers config.json and, for every `*.safetensors` file, its size,
 * its header (names, dtypes, shapes, offsets) and 16 samples of 4 KiB spread evenly over its
 * tensor data. Two fine-tunes of one base differ in nearly every block, so a sample tells them
 * apart; a model with the same shapes but other values gets another identity. Resume compares it
 * with the identity its checkpoint was trained on (src/train/run-state.ts).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';

const SAMPLES = 16;
const SAMPLE_BYTES = 4096;

export interface ModelIdentity {
  /** sha256 (hex) over config.json and the sampled weight files. */
  sha256: string;
  /** Weight files covered and their sizes, for messages. */
  files: { name: string; bytes: number }[];
}

/** The identity of the model folder `dir` (see the file comment). */
export async function modelIdentity(dir: string): Promise<ModelIdentity> {
  const hash = createHash('sha256');
  const config = await fs.readFile(path.join(dir, 'config.json')).catch((err: NodeJS.ErrnoException) => {
    throw new RpvError(`${path.join(dir, 'config.json')}: cannot read: ${err.code ?? err.message}`);
  });
  hash.update(`config.json ${config.length}\n`).update(config);
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.safetensors')).sort();
  const files: ModelIdentity['files'] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const handle = await fs.open(file, 'r');
    try {
      const { size } = await handle.stat();
      files.push({ name, bytes: size });
      hash.update(`\n${name} ${size}\n`);
      const lengthBytes = Buffer.alloc(8);
      await handle.read(lengthBytes, 0, 8, 0);
      // The header as stored, capped: a file too short to hold it hashes what there is.
      const headerBytes = Math.min(Number(lengthBytes.readBigUInt64LE(0)), Math.max(0, size - 8), 16 << 20);
      const header = Buffer.alloc(headerBytes);
      await handle.read(header, 0, headerBytes, 8);
      hash.update(lengthBytes).update(header);
      const dataStart = 8 + headerBytes;
      const dataBytes = size - dataStart;
      if (dataBytes <= 0) continue;
      const sample = Buffer.alloc(Math.min(SAMPLE_BYTES, dataBytes));
      for (let i = 0; i < SAMPLES; i++) {
        const at = dataStart + Math.floor(((dataBytes - sample.length) * i) / (SAMPLES - 1));
        const { bytesRead } = await handle.read(sample, 0, sample.length, at);
        hash.update(sample.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  }
  return { sha256: hash.digest('hex'), files };
}
