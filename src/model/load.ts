/**
 * loadModel: a Hugging Face folder (config.json, model.safetensors or a sharded index,
 * tokenizer.json, tokenizer_config.json) to a CausalLM on the current tfjs backend. Weights are
 * decoded to float32 and transposed to [in, out], one tensor at a time.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { describeBackend, initBackend, tfCore, type BackendName } from './backend.js';
import { readConfig } from './config.js';
import { CausalLM, type DecoderWeights, type LayerWeights } from './decoder.js';
import { ChatTokenizer } from './tokenizer.js';
import { expectedTensors, WeightFolder } from './weights.js';
import type { Linear } from './lora.js';

/** Token the video placeholder is looked up as, in order (Qwen2-VL's names first). */
export const VIDEO_PLACEHOLDERS = ['<|video_pad|>', '<video>'];

export interface LoadModelOptions {
  /** Backend to start if none is started yet (default auto). */
  backend?: BackendName;
  /** Load the tokenizer too (default true). */
  tokenizer?: boolean;
  /** Video placeholder token; default the first of VIDEO_PLACEHOLDERS the tokenizer knows. */
  videoToken?: string;
  /** Where a memory warning goes (one line); default stderr, null for silence. */
  log?: ((line: string) => void) | null;
}

/**
 * Float32 weights above this on the wasm backend get a warning: its heap is a wasm32 memory of at
 * most 4 GiB, shared by weights, activations saved for the backward pass and gradients. Measured:
 * a Qwen2.5-0.5B-shaped model (1.9 GiB) runs a 128-token forward but a LoRA training step exhausts
 * the heap (emscripten aborts).
 */
export const WASM_WEIGHT_WARN_BYTES = 1.5 * 2 ** 30;

export async function loadModel(dir: string, { backend = 'auto', tokenizer = true, videoToken, log = (l) => process.stderr.write(`${l}\n`) }: LoadModelOptions = {}): Promise<CausalLM> {
  const config = await readConfig(dir);
  if (!describeBackend()) await initBackend({ backend });
  const tf = await tfCore();
  const folder = await WeightFolder.open(dir);
  const expected = expectedTensors(config);
  const created: tfc.Tensor[] = [];
  const keep = <T extends tfc.Tensor>(t: T): T => {
    created.push(t);
    return t;
  };
  try {
    // Check every name and shape before decoding anything, so a bad folder fails fast.
    for (const name of expected.keys()) {
      if (!folder.has(name)) throw new RpvError(`${dir}: missing tensor ${name} (looked in ${folder.files.join(', ')})`);
    }
    const read = async (name: string) => (await folder.read(name, expected.get(name))).data as Float32Array;
    const vec = async (name: string) => keep(tf.tensor1d(await read(name)));
    /** A PyTorch linear ([out, in] weight, optional bias) as [in, out] for plain matmuls. */
    const linearOf = async (prefix: string, hasBias: boolean): Promise<Linear> => {
      const name = `${prefix}.weight`;
      const [rows, cols] = expected.get(name)!;
      const data = await read(name);
      const weightT = keep(tf.tidy(() => tf.transpose(tf.tensor2d(data, [rows, cols])) as tfc.Tensor2D));
      return { weightT, bias: hasBias ? await vec(`${prefix}.bias`) : undefined };
    };
    const layers: LayerWeights[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}`;
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
    const embedData = await read('model.embed_tokens.weight');
    const weights: DecoderWeights = {
      embed: keep(tf.tensor2d(embedData, [config.vocabSize, config.hiddenSize])),
      layers,
      norm: await vec('model.norm.weight'),
    };
    if (!config.tieWordEmbeddings) {
      const head = await read('lm_head.weight');
      weights.lmHeadT = keep(tf.tidy(() => tf.transpose(tf.tensor2d(head, [config.vocabSize, config.hiddenSize])) as tfc.Tensor2D));
    }
    const weightBytes = created.reduce((sum, t) => sum + t.size * 4, 0);
    if (tf.getBackend() === 'wasm' && weightBytes > WASM_WEIGHT_WARN_BYTES) {
      log?.(
        `rpv: ${dir}: ${(weightBytes / 2 ** 30).toFixed(1)} GiB of float32 weights on the wasm backend, whose heap is at most 4 GiB: ` +
          'training may run out of memory (short sequences, small batches help); the tensorflow backend (tfjs-node) has no such limit',
      );
    }
    const model = new CausalLM(tf, config, weights, dir);
    if (tokenizer) {
      model.tokenizer = await ChatTokenizer.load(dir);
      const names = videoToken ? [videoToken] : VIDEO_PLACEHOLDERS;
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
    throw err;
  } finally {
    await folder.close();
  }
}
