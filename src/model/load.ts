/**
 * loadModel: a Hugging Face folder (config.json, model.safetensors or a sharded index,
 * tokenizer.json, tokenizer_config.json) to a CausalLM on the current tfjs backend.
 *
 * The frozen base lives in one of two places (src/model/frozen.ts):
 *   - mapped: on the wasm backend with rpv's native addon, the safetensors files are
 *     memory-mapped and every matrix is used in place, in its stored dtype (F32/F16/BF16); only
 *     norm weights and biases are read into memory. The tfjs heap holds activations and the
 *     trainable state alone, so models far beyond its 4 GiB fit.
 *   - tensors: elsewhere (other backends, no addon, other dtypes), weights are decoded to float32
 *     tfjs tensors, linears transposed to [in, out], one tensor at a time.
 *
 * Before either, the folder is checked against its config (weights.ts checkWeightNames: no unused
 * tensor, biases that fit model_type; every tensor present, of its shape, in a float dtype) and
 * every value is scanned once for NaN and infinities, so a broken folder is refused by name
 * instead of giving NaN everywhere.
 */
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { describeBackend, initBackend, tfCore, type BackendName } from './backend.js';
import { parseConfig, readConfig, type DecoderConfig } from './config.js';
import { IMG_CONTEXT, readInternVLConfig, type InternVLConfig } from './internvl.js';
import { CausalLM, type DecoderWeights, type LayerWeights } from './decoder.js';
import { MappedLinear, MappedTable, TensorLinear, TensorTable, type FrozenLinear, type FrozenTable } from './frozen.js';
import { ChatTokenizer } from './tokenizer.js';
import { checkWeightNames, expectedTensors, WeightFolder } from './weights.js';
import { MappedFile, mappedWeightsUnavailable, type MappedDType } from '../native/frozen.js';
import { describeNativeMatmul } from '../native/matmul.js';

/** Token the video placeholder is looked up as, in order (Qwen2-VL's names first). */
export const VIDEO_PLACEHOLDERS = ['<|video_pad|>', '<video>'];

/** Where the frozen base lives: `mapped` (native, in place), `tensors` (tfjs), or `auto`. */
export type WeightPlacement = 'auto' | 'mapped' | 'tensors';

export interface LoadModelOptions {
  /** Backend to start if none is started yet (default auto). */
  backend?: BackendName;
  /** Load the tokenizer too (default true). */
  tokenizer?: boolean;
  /** Video placeholder token; default the first of VIDEO_PLACEHOLDERS the tokenizer knows. */
  videoToken?: string;
  /** Where a memory warning goes (one line); default stderr, null for silence. */
  log?: ((line: string) => void) | null;
  /**
   * `auto` (default): mapped on the wasm backend when the native addon can map files and every
   * matrix is F32, F16 or BF16, tensors otherwise. `mapped` fails with the reason when it cannot.
   * RPV_WEIGHTS=mapped|tensors overrides `auto`.
   */
  weights?: WeightPlacement;
}

/**
 * Float32 weights above this on the wasm backend's tensors get a warning: its heap is a wasm32
 * memory of at most 4 GiB, shared by weights, activations saved for the backward pass and
 * gradients (mapped weights are not in it).
 */
export const WASM_WEIGHT_WARN_BYTES = 1.5 * 2 ** 30;

const MAPPABLE: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);

/**
 * Why the weights cannot be mapped here (null when it can). `isMapped`: which tensors are used in
 * place (the decoder's: the 2-D matrices; a vision tower's: its projections and patch kernel).
 */
export function mappedReason(tf: typeof tfc, folder: WeightFolder, expected: Map<string, number[]>, isMapped: (shape: number[]) => boolean = (shape) => shape.length === 2): string | null {
  if (tf.getBackend() !== 'wasm') return `mapped weights need the wasm backend (this is ${tf.getBackend()})`;
  // The matmul's current state (installNativeMatmul / uninstallNativeMatmul may follow initBackend).
  const matmul = describeNativeMatmul();
  if (!matmul.active) return `the native matmul is off (${matmul.reason ?? 'unknown reason'})`;
  const unavailable = mappedWeightsUnavailable();
  if (unavailable) return unavailable;
  for (const [name, shape] of expected) {
    if (!isMapped(shape)) continue;
    const loc = folder.location(name, shape);
    if (!MAPPABLE.has(loc.dtype)) return `tensor ${name} is ${loc.dtype} (mapped weights are F32, F16 or BF16)`;
  }
  return null;
}

export async function loadModel(dir: string, { backend = 'auto', tokenizer = true, videoToken, log = (l) => process.stderr.write(`${l}\n`), weights: placement }: LoadModelOptions = {}): Promise<CausalLM> {
  // An InternVL chat folder: its language model is llm_config over the `language_model.` tensors.
  const internvl = await readInternVLConfig(dir);
  const config = internvl ? parseConfig(internvl.llm, `${path.join(dir, 'config.json')}: llm_config`) : await readConfig(dir);
  const pre = internvl ? 'language_model.' : '';
  if (!describeBackend()) await initBackend({ backend });
  const tf = await tfCore();
  const folder = await WeightFolder.open(dir);
  const expected = new Map([...expectedTensors(config)].map(([n, s]) => [pre + n, s]));
  const created: { dispose(): void }[] = [];
  const files = new Map<string, MappedFile>();
  try {
    // Check names, shapes and dtypes before decoding anything, so a bad folder fails fast; then
    // every value once, on its stored bits: a NaN weight would make every output NaN.
    checkWeightNames(folder, config, expected, path.join(dir, 'config.json'), pre);
    for (const [name, shape] of expected) folder.location(name, shape);
    for (const name of expected.keys()) await folder.assertFinite(name);
    const want = placement ?? (process.env.RPV_WEIGHTS as WeightPlacement | undefined) ?? 'auto';
    if (!['auto', 'mapped', 'tensors'].includes(want)) throw new RpvError(`loadModel: weights must be auto, mapped or tensors, found ${JSON.stringify(want)}`);
    const reason = want === 'tensors' ? 'tensors asked for' : mappedReason(tf, folder, expected);
    if (want === 'mapped' && reason) throw new RpvError(`${dir}: cannot map the weights: ${reason}`);
    const mapped = reason === null;
    const read = async (name: string) => (await folder.read(name, expected.get(name))).data as Float32Array;
    const vec = async (name: string) => {
      const t = tf.tensor1d(await read(name));
      created.push(t);
      return t;
    };
    const matrixOf = (name: string) => {
      const loc = folder.location(name, expected.get(name));
      let file = files.get(loc.file);
      if (!file) {
        file = MappedFile.open(loc.file);
        files.set(loc.file, file);
      }
      return file.matrix(loc.byteOffset, loc.dtype as MappedDType, loc.shape[0], loc.shape[1]);
    };
    /** A PyTorch linear ([out, in] weight, optional bias). */
    const linearOf = async (prefix: string, hasBias: boolean): Promise<FrozenLinear> => {
      const name = `${prefix}.weight`;
      let lin: FrozenLinear;
      if (mapped) {
        lin = new MappedLinear(matrixOf(name), hasBias ? await read(`${prefix}.bias`) : undefined);
      } else {
        const [rows, cols] = expected.get(name)!;
        const data = await read(name);
        const weightT = tf.tidy(() => tf.transpose(tf.tensor2d(data, [rows, cols])) as tfc.Tensor2D);
        lin = new TensorLinear(tf, weightT, hasBias ? await vec(`${prefix}.bias`) : undefined);
      }
      created.push(lin);
      return lin;
    };
    const tableOf = async (name: string, transposed: boolean): Promise<FrozenTable> => {
      let table: FrozenTable;
      if (mapped) table = new MappedTable(matrixOf(name));
      else {
        const data = await read(name);
        const t = tf.tensor2d(data, [config.vocabSize, config.hiddenSize]);
        table = new TensorTable(tf, transposed ? tf.tidy(() => tf.transpose(t) as tfc.Tensor2D) : t, transposed);
        if (transposed) t.dispose();
      }
      created.push(table);
      return table;
    };
    const layers: LayerWeights[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `${pre}model.layers.${i}`;
      const a = `${p}.self_attn`;
      const m = `${p}.mlp`;
      layers.push({
        inputNorm: await vec(`${p}.input_layernorm.weight`),
        postNorm: await vec(`${p}.post_attention_layernorm.weight`),
        attn: {
          q: await linearOf(`${a}.q_proj`, config.attentionBias),
          k: await linearOf(`${a}.k_proj`, config.attentionBias),
          v: await linearOf(`${a}.v_proj`, config.attentionBias),
          o: await linearOf(`${a}.o_proj`, config.outputBias),
        },
        mlp: {
          gate: await linearOf(`${m}.gate_proj`, config.mlpBias),
          up: await linearOf(`${m}.up_proj`, config.mlpBias),
          down: await linearOf(`${m}.down_proj`, config.mlpBias),
        },
      });
    }
    const embed = await tableOf(`${pre}model.embed_tokens.weight`, false);
    const weights: DecoderWeights = {
      embed,
      head: config.tieWordEmbeddings ? embed : await tableOf(`${pre}lm_head.weight`, true),
      layers,
      norm: await vec(`${pre}model.norm.weight`),
      mappedFiles: [...files.values()],
    };
    if (!mapped) warnHeap(tf, dir, weights, config, reason, log);
    const model = new CausalLM(tf, config, weights, dir);
    model.internvl = internvl ?? undefined;
    if (tokenizer) {
      model.tokenizer = await ChatTokenizer.load(dir);
      // InternVL's frame features go where <IMG_CONTEXT> stands.
      const names = videoToken ? [videoToken] : internvl ? [IMG_CONTEXT] : VIDEO_PLACEHOLDERS;
      for (const name of names) {
        const id = model.tokenizer.tokenToId(name);
        if (id !== undefined) {
          model.videoTokenId = id;
          break;
        }
      }
      if (videoToken && model.videoTokenId === undefined) throw new RpvError(`${dir}: the tokenizer has no token ${videoToken} (video placeholder)`);
    }
    return model;
  } catch (err) {
    for (const t of created) t.dispose();
    for (const f of files.values()) f.close();
    throw err;
  } finally {
    await folder.close();
  }
}

/** Bytes of the frozen weights held as tensors (the wasm backend's heap on wasm); mapped weights are not counted. */
export function weightHeapBytes(weights: DecoderWeights, config: DecoderConfig): number {
  let bytes = weights.embed.heapBytes + (weights.head === weights.embed ? 0 : weights.head.heapBytes) + 4 * config.hiddenSize;
  for (const l of weights.layers) {
    bytes += 8 * config.hiddenSize;
    for (const lin of [l.attn.q, l.attn.k, l.attn.v, l.attn.o, l.mlp.gate, l.mlp.up, l.mlp.down]) bytes += lin.heapBytes;
  }
  return bytes;
}

function warnHeap(tf: typeof tfc, dir: string, weights: DecoderWeights, config: DecoderConfig, reason: string | null, log: LoadModelOptions['log']): void {
  const bytes = weightHeapBytes(weights, config);
  if (tf.getBackend() === 'wasm' && bytes > WASM_WEIGHT_WARN_BYTES) {
    log?.(
      `rpv: ${dir}: ${(bytes / 2 ** 30).toFixed(1)} GiB of float32 weights in the wasm backend's heap, which stops at 4 GiB ` +
        `(they are not mapped: ${reason}): training may run out of memory`,
    );
  }
}
