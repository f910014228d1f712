/**
 * A model folder's weights: `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {name: file}}`), read tensor by
 * tensor. Names and shapes are checked where they enter, with errors naming tensor and file.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { SafetensorsReader, type SafetensorsDType, type SafetensorsTensor } from '../util/safetensors.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export class WeightFolder {
  private constructor(
    readonly dir: string,
    /** tensor name -> reader of the file that holds it */
    private readonly where: Map<string, SafetensorsReader>,
    private readonly readers: SafetensorsReader[],
    /** Files, for messages. */
    readonly files: string[],
  ) {}

  static async open(dir: string): Promise<WeightFolder> {
    const indexPath = path.join(dir, INDEX_FILE);
    const singlePath = path.join(dir, SINGLE_FILE);
    const exists = async (f: string) => fs.stat(f).then(() => true, () => false);
    if (await exists(indexPath)) {
      let index: { weight_map?: Record<string, string> };
      try {
        index = JSON.parse(await fs.readFile(indexPath, 'utf8'));
      } catch (err) {
        throw new RpvError(`${indexPath}: not valid JSON: ${(err as Error).message}`);
      }
      const map = index.weight_map;
      if (!map || typeof map !== 'object') throw new RpvError(`${indexPath}: missing field weight_map`);
      const byFile = new Map<string, SafetensorsReader>();
      const readers: SafetensorsReader[] = [];
      const where = new Map<string, SafetensorsReader>();
      try {
        for (const [name, file] of Object.entries(map)) {
          let reader = byFile.get(file);
          if (!reader) {
            reader = await SafetensorsReader.open(path.join(dir, file));
            byFile.set(file, reader);
            readers.push(reader);
          }
          if (!reader.entries.has(name)) throw new RpvError(`${indexPath}: weight_map puts ${name} in ${file}, which has no such tensor`);
          where.set(name, reader);
        }
      } catch (err) {
        await Promise.all(readers.map((r) => r.close()));
        throw err;
      }
      return new WeightFolder(dir, where, readers, [...byFile.keys()]);
    }
    if (!(await exists(singlePath))) {
      throw new RpvError(`${dir}: no weights: expected ${SINGLE_FILE} or ${INDEX_FILE}`);
    }
    const reader = await SafetensorsReader.open(singlePath);
    const where = new Map<string, SafetensorsReader>();
    for (const name of reader.names) where.set(name, reader);
    return new WeightFolder(dir, where, [reader], [SINGLE_FILE]);
  }

  get names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** Read a tensor, checking its shape when `expected` is given. */
  async read(name: string, expected?: number[]): Promise<SafetensorsTensor> {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    const entry = reader.entries.get(name)!;
    if (expected && (entry.shape.length !== expected.length || entry.shape.some((d, i) => d !== expected[i]))) {
      throw new RpvError(`${reader.file}: tensor ${name}: expected shape [${expected.join(', ')}], found [${entry.shape.join(', ')}]`);
    }
    return reader.read(name);
  }

  /**
   * File and byte range of a tensor, for using it in place (memory-mapped), with the same shape
   * check as read().
   */
  location(name: string, expected?: number[]): { file: string; dtype: SafetensorsDType; shape: number[]; byteOffset: number; byteLength: number } {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    const loc = reader.location(name);
    if (expected && (loc.shape.length !== expected.length || loc.shape.some((d, i) => d !== expected[i]))) {
      throw new RpvError(`${reader.file}: tensor ${name}: expected shape [${expected.join(', ')}], found [${loc.shape.join(', ')}]`);
    }
    return { file: reader.file, ...loc };
  }

  async close(): Promise<void> {
    await Promise.all(this.readers.map((r) => r.close()));
  }
}

/** The Hugging Face name and PyTorch shape ([out, in]) of every base tensor of a decoder. */
export function expectedTensors(config: {
  vocabSize: number; hiddenSize: number; intermediateSize: number; numLayers: number; numHeads: number; numKvHeads: number;
  headDim: number; tieWordEmbeddings: boolean; attentionBias: boolean; outputBias: boolean; mlpBias: boolean;
}): Map<string, number[]> {
  const { vocabSize: V, hiddenSize: H, intermediateSize: I, numHeads: nh, numKvHeads: nkv, headDim: hd } = config;
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [V, H]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    m.set(`${p}.input_layernorm.weight`, [H]);
    m.set(`${p}.self_attn.q_proj.weight`, [nh * hd, H]);
    m.set(`${p}.self_attn.k_proj.weight`, [nkv * hd, H]);
    m.set(`${p}.self_attn.v_proj.weight`, [nkv * hd, H]);
    if (config.attentionBias) {
      m.set(`${p}.self_attn.q_proj.bias`, [nh * hd]);
      m.set(`${p}.self_attn.k_proj.bias`, [nkv * hd]);
      m.set(`${p}.self_attn.v_proj.bias`, [nkv * hd]);
    }
    m.set(`${p}.self_attn.o_proj.weight`, [H, nh * hd]);
    if (config.outputBias) m.set(`${p}.self_attn.o_proj.bias`, [H]);
    m.set(`${p}.post_attention_layernorm.weight`, [H]);
    m.set(`${p}.mlp.gate_proj.weight`, [I, H]);
    m.set(`${p}.mlp.up_proj.weight`, [I, H]);
    m.set(`${p}.mlp.down_proj.weight`, [H, I]);
    if (config.mlpBias) {
      m.set(`${p}.mlp.gate_proj.bias`, [I]);
      m.set(`${p}.mlp.up_proj.bias`, [I]);
      m.set(`${p}.mlp.down_proj.bias`, [H]);
    }
  }
  m.set('model.norm.weight', [H]);
  if (!config.tieWordEmbeddings) m.set('lm_head.weight', [V, H]);
  return m;
}
