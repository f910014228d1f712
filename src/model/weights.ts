/**
 * A model folder's weights: `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {name: file}}`), read tensor by
 * tensor. Names and shapes are checked where they enter, with errors naming tensor and file.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { SafetensorsReader, type SafetensorsDType, type SafetensorsTensor } from '../util/safetensors.js';
import { nonFiniteWeightError } from '../util/finite.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** dtypes a weight (matrix, norm, bias) may be stored in. */
export const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16', 'F64']);

/** Refuses a tensor the model uses as a float weight stored in another dtype (I32 values would be used as numbers, silently). */
export function assertFloatDType(file: string, name: string, dtype: string): void {
  if (!FLOAT_DTYPES.has(dtype)) throw new RpvError(`${file}: tensor ${name}: dtype ${dtype} where a float weight is needed (F32, F16, BF16 or F64)`);
}

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

  /** The file that holds a tensor (its path). */
  fileOf(name: string): string {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    return reader.file;
  }

  /** Read a tensor, checking its shape, and that it is stored as a float, when `expected` is given. */
  async read(name: string, expected?: number[]): Promise<SafetensorsTensor> {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    const entry = reader.entries.get(name)!;
    if (expected) {
      if (entry.shape.length !== expected.length || entry.shape.some((d, i) => d !== expected[i])) {
        throw new RpvError(`${reader.file}: tensor ${name}: expected shape [${expected.join(', ')}], found [${entry.shape.join(', ')}]`);
      }
      assertFloatDType(reader.file, name, entry.dtype);
    }
    return reader.read(name);
  }

  /** Read `out.length` stored bytes of a tensor from byte `at` of its data (see SafetensorsReader.readBytes). */
  async readBytes(name: string, at: number, out: Uint8Array): Promise<void> {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    await reader.readBytes(name, at, out);
  }

  /**
   * File and byte range of a tensor, for using it in place (memory-mapped), with the same shape
   * and dtype checks as read().
   */
  location(name: string, expected?: number[]): { file: string; dtype: SafetensorsDType; shape: number[]; byteOffset: number; byteLength: number } {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    const loc = reader.location(name);
    if (expected) {
      if (loc.shape.length !== expected.length || loc.shape.some((d, i) => d !== expected[i])) {
        throw new RpvError(`${reader.file}: tensor ${name}: expected shape [${expected.join(', ')}], found [${loc.shape.join(', ')}]`);
      }
      assertFloatDType(reader.file, name, loc.dtype);
    }
    return { file: reader.file, ...loc };
  }

  /** Refuses a tensor holding NaN or an infinity, naming file, tensor and the first such value (one pass over its stored bits). */
  async assertFinite(name: string): Promise<void> {
    const reader = this.where.get(name);
    if (!reader) throw new RpvError(`${this.dir}: missing tensor ${name} (looked in ${this.files.join(', ')})`);
    const bad = await reader.findNonFinite(name);
    if (bad) throw nonFiniteWeightError(reader.file, name, bad.index, bad.count, bad.value);
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

/** Buffers some checkpoints carry that rpv recomputes from config.json (rotary frequencies): not weights. */
const RECOMPUTED_BUFFER = /\.rotary_emb\.inv_freq$/;

/**
 * Checks that config.json describes the weights beside it, before any tensor is read:
 * - the attention biases fit `model_type` (qwen2 has q/k/v biases; llama has none unless
 *   `attention_bias` is true), so a wrong model_type is named rather than a missing tensor;
 * - every tensor in the files is used: a tensor the config does not use (a second layer when
 *   num_hidden_layers is 1, an lm_head with tied embeddings) means config and weights disagree,
 *   and is an error (rotary `inv_freq` buffers are recomputed and may stay).
 * Missing tensors, shapes and dtypes are checked by read() and location().
 */
export function checkWeightNames(
  folder: WeightFolder,
  config: { arch: string; numLayers: number; attentionBias: boolean; tieWordEmbeddings: boolean },
  expected: Map<string, number[]>,
  configFile: string,
  /** Prefix of the language model's tensors in a folder that holds more (InternVL: `language_model.`); others are not checked here. */
  prefix = '',
): void {
  const bias = `${prefix}model.layers.0.self_attn.q_proj.bias`;
  if (config.numLayers > 0 && expected.has(bias) !== folder.has(bias)) {
    const type = JSON.stringify(config.arch);
    if (folder.has(bias)) {
      throw new RpvError(`${configFile}: model_type ${type} does not fit the weights: ${folder.fileOf(bias)} holds ${bias}, and ${config.arch} without attention_bias has no attention biases (a qwen2 model?)`);
    }
    throw new RpvError(`${configFile}: model_type ${type} does not fit the weights: ${folder.files.join(', ')} ${folder.files.length === 1 ? 'holds' : 'hold'} no ${bias}, which ${config.arch === 'qwen2' ? 'qwen2 always has' : 'attention_bias true asks for'} (a llama model?)`);
  }
  const unused = folder.names.filter((n) => n.startsWith(prefix) && !expected.has(n) && !RECOMPUTED_BUFFER.test(n));
  if (unused.length === 0) return;
  const first = unused[0]!;
  const layer = /^model\.layers\.(\d+)\./.exec(first.slice(prefix.length));
  const hint =
    layer && Number(layer[1]) >= config.numLayers
      ? `num_hidden_layers is ${config.numLayers}, the weights have layer ${layer[1]}`
      : first === `${prefix}lm_head.weight` && config.tieWordEmbeddings
        ? 'tie_word_embeddings is true, so lm_head.weight would be ignored'
        : `${config.arch} has no such tensor`;
  throw new RpvError(
    `${configFile}: does not fit the weights: ${unused.length} tensor${unused.length === 1 ? '' : 's'} in ${folder.files.join(', ')} ${unused.length === 1 ? 'is' : 'are'} not used (first: ${first}; ${hint})`,
  );
}
