/**
 * writeTinyModel: a random-initialised Llama or Qwen2 model folder with the real Hugging Face
 * layout (config.json, generation_config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json with a ChatML template). The tokenizer is a real byte-level BPE learned
 * from a small bilingual text, so Chinese and English both tokenise sensibly. Field names follow
 * transformers exactly, so AutoModelForCausalLM and AutoTokenizer load the folder.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { safetensorsDataBytes, writeSafetensorsStreaming, type SafetensorsStreamTensor } from '../util/safetensors.js';
import { bpeTokenizerJson, trainByteLevelBpe } from './bpe.js';
import type { Architecture } from './config.js';
import { expectedTensors, INDEX_FILE, SINGLE_FILE } from './weights.js';
import { hashString, Mulberry32, seededRandom } from '../util/random.js';

/**
 * Real model shapes (from the published config.json files), for tests and benchmarks of
 * real-sized models without a model hub: random weights, the real layer sizes and vocabulary.
 */
export const MODEL_PRESETS = {
  'qwen2.5-0.5b': { arch: 'qwen2', hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2, vocabSize: 151936, tieWordEmbeddings: true },
  'qwen2.5-1.5b': { arch: 'qwen2', hiddenSize: 1536, intermediateSize: 8960, numLayers: 28, numHeads: 12, numKvHeads: 2, vocabSize: 151936, tieWordEmbeddings: true },
  'qwen2.5-7b': { arch: 'qwen2', hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28, numKvHeads: 4, vocabSize: 152064, tieWordEmbeddings: false },
} as const satisfies Record<string, TinyModelOptions>;
export type ModelPreset = keyof typeof MODEL_PRESETS;

/** Above this many values, weights are drawn tensor by tensor while streaming to disk (see writeTinyModel). */
const STREAMED_VALUES = 64 * 2 ** 20;

export interface TinyModelOptions {
  /**
   * Start from a real model's shapes (qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b): BF16 weights, the
   * real vocabulary size, a small real tokenizer (its ids are a prefix of the vocabulary, as a
   * real tokenizer's are). Fields given beside it override the preset's.
   */
  preset?: ModelPreset;
  /** `qwen2` (default; q/k/v biases, tied embeddings) or `llama` (llama3 rope scaling, untied head). */
  arch?: Architecture;
  seed?: number;
  hiddenSize?: number;
  numLayers?: number;
  numHeads?: number;
  numKvHeads?: number;
  intermediateSize?: number;
  /** Total vocabulary: 256 bytes + merges + special tokens. */
  vocabSize?: number;
  /** Standard deviation of weight init (transformers' initializer_range); default 0.02. */
  initStd?: number;
  /** Tie the output projection to the embeddings; default true for qwen2, false for llama. */
  tieWordEmbeddings?: boolean;
  /** dtype of the weights file; default F32 (BF16 with a preset). */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Tokens of the BPE tokenizer (<= vocabSize); default vocabSize, 512 with a preset. */
  tokenizerVocab?: number;
  /**
   * Give every id of the model a token: after the BPE's merges and the special tokens, ids up to
   * vocabSize get filler tokens (2-4 letter/digit strings that no merge produces, so encoding is
   * unchanged and every id decodes). Default true with a preset (the real vocabulary sizes).
   */
  fillVocab?: boolean;
  /**
   * Shard the weights above this many bytes per file (model-0000i-of-0000n.safetensors +
   * model.safetensors.index.json, as transformers' save_pretrained does); default 5 GB.
   */
  maxShardBytes?: number;
  /** Called with bytes written so far and in all (progress of large models). */
  onProgress?: (written: number, total: number) => void;
  /**
   * Draw each tensor from its own generator (seeded by the seed and the tensor's name) while it
   * streams to disk; default: above 64M values (small models keep one generator, so their bytes
   * stay what they always were).
   */
  perTensorSeeds?: boolean;
}

/** Special tokens of the tiny tokenizer, in id order after the BPE vocabulary (Qwen2 names). */
export const TINY_SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|video_pad|>'];

/** ChatML, as Qwen2 uses it (without its default system prompt). */
export const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** Training text for the tiny BPE: role-play dialogue lines in English and Chinese. */
export const TINY_CORPUS = `
You are Li Wei, a street food vendor in Chengdu. Stay in character and answer the customer.
User: What are you cooking today? Assistant: Spicy noodles with peanuts and chili oil, the best on this street!
User: Is it very hot? Assistant: Only a little. I can make it mild for you, my friend.
The video shows a woman walking through a night market. She smiles at the camera and points at the stall.
In the next frame the cook lifts the noodles from the pot, steam rising into the evening air.
Frame 1 at 0.0s: Frame 2 at 2.0s: Frame 3 at 4.0s: Frame 4 at 6.0s: Frame 5 at 8.0s: Frame 6 at 10.0s:
Describe the character's tone, personality and what they are doing in the video.
She is cheerful, patient and proud of her cooking. She speaks quickly and laughs often.
The old teacher sits by the window reading a letter, then looks up and says: "Come in, sit down."
I think the weather will be good tomorrow, so we can go to the mountains together.
你是李伟，一个在成都卖小吃的摊主。请保持角色，回答顾客的问题。
用户：你今天做什么？助手：麻辣面，加花生和辣椒油，这条街上最好吃的！
用户：很辣吗？助手：只有一点点辣。我可以给你做微辣的，朋友。
视频里一个女孩走过夜市，她对着镜头笑，然后指着小摊。
下一帧里厨师从锅里捞起面条，热气升到傍晚的空气里。
请描述这个角色的语气、性格，以及她在视频里做什么。
她很开朗，有耐心，为自己的手艺感到骄傲。她说话很快，经常笑。
老师坐在窗边读信，然后抬头说：“请进，坐下吧。”
我觉得明天天气会很好，我们可以一起去山里。
哈哈，你说得对！我们明天见。谢谢你，再见。
`.repeat(3);

function resolve(options: TinyModelOptions) {
  if (options.preset !== undefined && !(options.preset in MODEL_PRESETS)) {
    throw new RpvError(`make-tiny-model: unknown preset ${JSON.stringify(options.preset)}; expected one of ${Object.keys(MODEL_PRESETS).join(', ')}`);
  }
  const preset: TinyModelOptions = options.preset ? { ...MODEL_PRESETS[options.preset], dtype: 'BF16', tokenizerVocab: 512 } : {};
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as TinyModelOptions;
  const o: TinyModelOptions = { ...preset, ...defined };
  const arch = o.arch ?? 'qwen2';
  if (arch !== 'qwen2' && arch !== 'llama') throw new RpvError(`make-tiny-model: unsupported architecture ${JSON.stringify(arch)}; supported: llama, qwen2`);
  const hiddenSize = o.hiddenSize ?? 64;
  const numHeads = o.numHeads ?? 4;
  const numKvHeads = o.numKvHeads ?? 2;
  if (hiddenSize % numHeads !== 0) throw new RpvError(`make-tiny-model: hiddenSize ${hiddenSize} must be a multiple of numHeads ${numHeads}`);
  if (numHeads % numKvHeads !== 0) throw new RpvError(`make-tiny-model: numHeads ${numHeads} must be a multiple of numKvHeads ${numKvHeads}`);
  const vocabSize = o.vocabSize ?? 512;
  const tokenizerVocab = o.tokenizerVocab ?? vocabSize;
  const minVocab = 256 + TINY_SPECIAL_TOKENS.length;
  if (tokenizerVocab < minVocab) throw new RpvError(`make-tiny-model: the tokenizer's ${tokenizerVocab} tokens are below ${minVocab} (256 byte tokens + ${TINY_SPECIAL_TOKENS.length} special tokens)`);
  if (tokenizerVocab > vocabSize) throw new RpvError(`make-tiny-model: the tokenizer's ${tokenizerVocab} tokens exceed vocabSize ${vocabSize}`);
  return {
    preset: options.preset,
    perTensorSeeds: o.perTensorSeeds,
    tokenizerVocab,
    fillVocab: o.fillVocab ?? options.preset !== undefined,
    maxShardBytes: o.maxShardBytes ?? 5e9,
    arch,
    seed: o.seed ?? 0,
    hiddenSize,
    numLayers: o.numLayers ?? 2,
    numHeads,
    numKvHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: o.intermediateSize ?? hiddenSize * 2 + hiddenSize / 2,
    vocabSize,
    initStd: o.initStd ?? 0.02,
    tie: o.tieWordEmbeddings ?? arch === 'qwen2',
    dtype: o.dtype ?? 'F32',
  };
}

/** Write the folder; returns the config.json written. */
export async function writeTinyModel(dir: string, options: TinyModelOptions = {}): Promise<Record<string, unknown>> {
  const o = resolve(options);
  await fs.mkdir(dir, { recursive: true });
  // Tokenizer: BPE merges fill its vocabulary up to the special tokens.
  const bpe = trainByteLevelBpe(TINY_CORPUS, o.tokenizerVocab - 256 - TINY_SPECIAL_TOKENS.length);
  const special = TINY_SPECIAL_TOKENS.map((content, i) => ({ content, id: bpe.vocab.size + i }));
  const tokenizerSize = bpe.vocab.size + special.length;
  const id = (t: string) => special.find((s) => s.content === t)!.id;
  const config: Record<string, unknown> = {
    architectures: [o.arch === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: o.arch,
    vocab_size: o.vocabSize,
    hidden_size: o.hiddenSize,
    intermediate_size: o.intermediateSize,
    num_hidden_layers: o.numLayers,
    num_attention_heads: o.numHeads,
    num_key_value_heads: o.numKvHeads,
    head_dim: o.headDim,
    hidden_act: 'silu',
    max_position_embeddings: o.preset ? 32768 : 4096,
    initializer_range: o.initStd,
    rms_norm_eps: 1e-6,
    rope_theta: o.arch === 'qwen2' ? 1000000.0 : 500000.0,
    tie_word_embeddings: o.tie,
    attention_dropout: 0.0,
    bos_token_id: id('<|endoftext|>'),
    eos_token_id: id('<|im_end|>'),
    use_cache: true,
    torch_dtype: o.dtype === 'F32' ? 'float32' : o.dtype === 'F16' ? 'float16' : 'bfloat16',
  };
  if (o.arch === 'llama') {
    Object.assign(config, {
      attention_bias: false,
      mlp_bias: false,
      pretraining_tp: 1,
      rope_scaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 256 },
    });
  } else {
    Object.assign(config, { use_sliding_window: false, sliding_window: null, max_window_layers: o.numLayers });
  }
  if (tokenizerSize > o.vocabSize) throw new RpvError(`make-tiny-model: tokenizer has ${tokenizerSize} tokens, more than vocabSize ${o.vocabSize}`);

  await writeWeights(dir, o, options.onProgress);

  const generationConfig = {
    bos_token_id: config.bos_token_id,
    eos_token_id: [id('<|im_end|>'), id('<|endoftext|>')],
    pad_token_id: id('<|endoftext|>'),
    do_sample: false,
  };
  await writeFileAtomic(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeFileAtomic(path.join(dir, 'generation_config.json'), `${JSON.stringify(generationConfig, null, 2)}\n`);
  await writeTinyTokenizer(dir, { tokenizerVocab: o.tokenizerVocab, fillTo: o.fillVocab ? o.vocabSize : undefined });
  return config;
}

export interface TinyTokenizerOptions {
  /** Tokens in all: 256 bytes + BPE merges + the special tokens. */
  tokenizerVocab: number;
  /** Special tokens after TINY_SPECIAL_TOKENS (InternVL's `<img>`, `<IMG_CONTEXT>`, ...). */
  extraSpecialTokens?: readonly string[];
  /** Chat template (default CHATML_TEMPLATE). */
  chatTemplate?: string;
  modelMaxLength?: number;
  /** Filler tokens from the last special token's id up to this vocabulary size (see fillVocabulary). */
  fillTo?: number;
}

/**
 * tokenizer.json and tokenizer_config.json of the tiny byte-level BPE: merges fill the vocabulary
 * up to the special tokens, which take the last ids. Returns the special tokens' ids.
 */
export async function writeTinyTokenizer(dir: string, { tokenizerVocab, extraSpecialTokens = [], chatTemplate = CHATML_TEMPLATE, modelMaxLength = 4096, fillTo }: TinyTokenizerOptions): Promise<Map<string, number>> {
  const names = [...TINY_SPECIAL_TOKENS, ...extraSpecialTokens];
  const bpe = trainByteLevelBpe(TINY_CORPUS, tokenizerVocab - 256 - names.length);
  const special = names.map((content, i) => ({ content, id: bpe.vocab.size + i }));
  if (fillTo !== undefined) fillVocabulary(bpe.vocab, bpe.vocab.size + special.length, fillTo);
  const addedTokensDecoder = Object.fromEntries(
    special.map((s) => [String(s.id), { content: s.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]),
  );
  const tokenizerConfig = {
    add_bos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: names.filter((n) => n !== '<|endoftext|>'),
    bos_token: null,
    chat_template: chatTemplate,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: modelMaxLength,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: null,
  };
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeFileAtomic(path.join(dir, 'tokenizer.json'), json(bpeTokenizerJson(bpe, special)));
  await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), json(tokenizerConfig));
  return new Map(special.map((s) => [s.content, s.id]));
}

/**
 * Filler tokens for ids `from` .. `to - 1`: strings of 2, 3, then 4 characters of [a-zA-Z0-9] that
 * the vocabulary does not hold yet, in a fixed order. No merge produces them, so text encodes as
 * before; each decodes to its characters.
 */
function fillVocabulary(vocab: Map<string, number>, from: number, to: number): void {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let next = from;
  const extend = (prefix: string, length: number): boolean => {
    if (prefix.length === length) {
      if (!vocab.has(prefix)) vocab.set(prefix, next++);
      return next >= to;
    }
    for (const c of alphabet) if (extend(prefix + c, length)) return true;
    return false;
  };
  for (let length = 2; next < to && length <= 4; length++) extend('', length);
}

type Resolved = ReturnType<typeof resolve>;

function shapesOf(o: Resolved): Map<string, number[]> {
  return expectedTensors({
    vocabSize: o.vocabSize,
    hiddenSize: o.hiddenSize,
    intermediateSize: o.intermediateSize,
    numLayers: o.numLayers,
    numHeads: o.numHeads,
    numKvHeads: o.numKvHeads,
    headDim: o.headDim,
    tieWordEmbeddings: o.tie,
    attentionBias: o.arch === 'qwen2',
    outputBias: false,
    mlpBias: false,
  });
}

/** Name and shape of every weight writeTinyModel would write, and their count: to size a model before writing it. */
export function tinyModelTensors(options: TinyModelOptions = {}): { shapes: Map<string, number[]>; parameters: number; dtype: 'F32' | 'F16' | 'BF16' } {
  const o = resolve(options);
  const shapes = shapesOf(o);
  let parameters = 0;
  for (const s of shapes.values()) parameters += s.reduce((a, b) => a * b, 1);
  return { shapes, parameters, dtype: o.dtype };
}

/**
 * Weights: normal(0, initStd) as transformers' _init_weights, norms at one. Small models draw
 * every tensor from one generator in name order (their bytes are fixed by the seed, golden files
 * depend on them). Models above STREAMED_VALUES values draw each tensor from its own generator
 * (seeded by the seed and its name; uniform with the same standard deviation, which is cheaper)
 * while it streams to disk, so a 7B model never has to be in memory.
 */
async function writeWeights(dir: string, o: Resolved, onProgress?: (written: number, total: number) => void): Promise<void> {
  const shapes = shapesOf(o);
  const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const total = [...shapes.values()].reduce((a, s) => a + count(s), 0);
  const fillers = new Map<string, (out: Float32Array) => void>();
  if (!(o.perTensorSeeds ?? total > STREAMED_VALUES)) {
    const rng = seededRandom(o.seed);
    for (const [name, shape] of shapes) {
      const data = name.endsWith('norm.weight') ? new Float32Array(count(shape)).fill(1) : rng.normal(count(shape), o.initStd);
      let at = 0;
      fillers.set(name, (out) => {
        out.set(data.subarray(at, at + out.length));
        at += out.length;
      });
    }
  } else {
    const half = o.initStd * Math.sqrt(3);
    for (const name of shapes.keys()) {
      if (name.endsWith('norm.weight')) fillers.set(name, (out) => out.fill(1));
      else {
        const rng = new Mulberry32(hashString(name, o.seed));
        fillers.set(name, (out) => rng.fillSymmetric(out, half));
      }
    }
  }
  const tensors: SafetensorsStreamTensor[] = [...shapes].map(([name, shape]) => ({ name, shape, dtype: o.dtype, fill: fillers.get(name)! }));
  const bytes = tensors.reduce((a, t) => a + safetensorsDataBytes(t.shape, t.dtype), 0);
  // Shards in name order of the layers, as save_pretrained fills them.
  const shards: SafetensorsStreamTensor[][] = [[]];
  let inShard = 0;
  for (const t of tensors) {
    const b = safetensorsDataBytes(t.shape, t.dtype);
    if (inShard > 0 && inShard + b > o.maxShardBytes) {
      shards.push([]);
      inShard = 0;
    }
    shards[shards.length - 1].push(t);
    inShard += b;
  }
  let written = 0;
  const onBytes = (b: number) => {
    written += b;
    onProgress?.(written, bytes);
  };
  const metadata = { format: 'pt' };
  // A folder written before with another layout must not keep stale weight files.
  for (const f of await fs.readdir(dir)) if (f === SINGLE_FILE || f === INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)) await fs.rm(path.join(dir, f));
  if (shards.length === 1) {
    await writeSafetensorsStreaming(path.join(dir, SINGLE_FILE), tensors, { metadata, onBytes });
    return;
  }
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < shards.length; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    await writeSafetensorsStreaming(path.join(dir, file), shards[i], { metadata, onBytes });
    for (const t of shards[i]) weightMap[t.name] = file;
  }
  await writeFileAtomic(path.join(dir, INDEX_FILE), `${JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2)}\n`);
}
