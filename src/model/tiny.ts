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
import { writeSafetensors, type SafetensorsInput } from '../util/safetensors.js';
import { bpeTokenizerJson, trainByteLevelBpe } from './bpe.js';
import { SeededRandom } from './random.js';
import type { Architecture } from './config.js';
import { expectedTensors } from './weights.js';

export interface TinyModelOptions {
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
  /** dtype of the weights file; default F32. */
  dtype?: 'F32' | 'F16' | 'BF16';
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

function resolve(o: TinyModelOptions) {
  const arch = o.arch ?? 'qwen2';
  if (arch !== 'qwen2' && arch !== 'llama') throw new RpvError(`make-tiny-model: unsupported architecture ${JSON.stringify(arch)}; supported: llama, qwen2`);
  const hiddenSize = o.hiddenSize ?? 64;
  const numHeads = o.numHeads ?? 4;
  const numKvHeads = o.numKvHeads ?? 2;
  if (hiddenSize % numHeads !== 0) throw new RpvError(`make-tiny-model: hiddenSize ${hiddenSize} must be a multiple of numHeads ${numHeads}`);
  if (numHeads % numKvHeads !== 0) throw new RpvError(`make-tiny-model: numHeads ${numHeads} must be a multiple of numKvHeads ${numKvHeads}`);
  const vocabSize = o.vocabSize ?? 512;
  const minVocab = 256 + TINY_SPECIAL_TOKENS.length;
  if (vocabSize < minVocab) throw new RpvError(`make-tiny-model: vocabSize ${vocabSize} is below ${minVocab} (256 byte tokens + ${TINY_SPECIAL_TOKENS.length} special tokens)`);
  return {
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
  // Tokenizer: BPE merges fill the vocabulary up to the special tokens.
  const bpe = trainByteLevelBpe(TINY_CORPUS, o.vocabSize - 256 - TINY_SPECIAL_TOKENS.length);
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
    max_position_embeddings: 4096,
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

  // Weights: normal(0, initStd) as transformers' _init_weights; norms at one.
  const rng = new SeededRandom(o.seed);
  const shapes = expectedTensors({
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
  const tensors = new Map<string, SafetensorsInput>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (name.endsWith('norm.weight')) data = new Float32Array(n).fill(1);
    else if (name.endsWith('.bias')) data = rng.normal(n, o.initStd);
    else data = rng.normal(n, o.initStd);
    tensors.set(name, { shape, data });
  }
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { dtype: o.dtype, metadata: { format: 'pt' } });

  const addedTokensDecoder = Object.fromEntries(
    special.map((s) => [String(s.id), { content: s.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]),
  );
  const tokenizerConfig = {
    add_bos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: ['<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|video_pad|>'],
    bos_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: 4096,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: null,
  };
  const generationConfig = {
    bos_token_id: config.bos_token_id,
    eos_token_id: [id('<|im_end|>'), id('<|endoftext|>')],
    pad_token_id: id('<|endoftext|>'),
    do_sample: false,
  };
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeFileAtomic(path.join(dir, 'config.json'), json(config));
  await writeFileAtomic(path.join(dir, 'generation_config.json'), json(generationConfig));
  await writeFileAtomic(path.join(dir, 'tokenizer.json'), json(bpeTokenizerJson(bpe, special)));
  await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), json(tokenizerConfig));
  return config;
}
