/**
 * writeTinyInternVL: a random InternVL chat folder with the published layout of InternVL2_5-1B
 * (config.json with llm_config and vision_config, one model.safetensors with `vision_model.*`,
 * `mlp1.*` and `language_model.*`, tokenizer with InternVL's special tokens, the tower's
 * preprocessor_config.json), or a tiny one of the same layout for tests. Weights are drawn tensor
 * by tensor while they stream to disk (the 1B folder never sits in memory).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { hashString, Mulberry32 } from '../util/random.js';
import { writeSafetensorsStreaming, type SafetensorsStreamTensor } from '../util/safetensors.js';
import { configFor, initOf, preprocessorFor } from '../vision/tiny.js';
import { expectedTowerTensors, readTowerConfig } from '../vision/family.js';
import { parseConfig } from './config.js';
import { INTERNVL2_5_SYSTEM, INTERNVL_SPECIAL_TOKENS, mlp1Tensors, parseInternVLConfig } from './internvl.js';
import { MODEL_PRESETS, writeTinyTokenizer, TINY_SPECIAL_TOKENS } from './tiny.js';
import { expectedTensors } from './weights.js';

export const INTERNVL_PRESETS = ['internvl2.5-1b', 'internvl-tiny'] as const;
export type InternVLPreset = (typeof INTERNVL_PRESETS)[number];

export interface TinyInternVLOptions {
  preset: InternVLPreset;
  seed?: number;
  /** Default BF16 for internvl2.5-1b, F32 for internvl-tiny. */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Standard deviation of the language model's weights (default 0.02). */
  initStd?: number;
}

/**
 * ChatML with the internvl2_5 template's system message when the messages bring none (InternVL's
 * conversation template replaces it by a system turn of the data, as rpv's prompt gives).
 */
export const INTERNVL2_5_CHAT_TEMPLATE =
  "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\n" + INTERNVL2_5_SYSTEM + "<|im_end|>\\n' }}{%- endif %}" +
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** Writes the folder (created if missing); returns its config.json. */
export async function writeTinyInternVL(dir: string, options: TinyInternVLOptions): Promise<Record<string, unknown>> {
  const { preset, seed = 0, initStd = 0.02 } = options;
  if (!(INTERNVL_PRESETS as readonly string[]).includes(preset)) throw new RpvError(`make-tiny-model: unknown InternVL preset ${JSON.stringify(preset)}; expected one of ${INTERNVL_PRESETS.join(', ')}`);
  const full = preset === 'internvl2.5-1b';
  const dtype = options.dtype ?? (full ? 'BF16' : 'F32');
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype];
  const tokenizerVocab = 512;
  const lm = full
    ? { ...MODEL_PRESETS['qwen2.5-0.5b'], vocabSize: 151674, maxPositions: 32768 }
    : { hiddenSize: 64, intermediateSize: 160, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: tokenizerVocab, maxPositions: 4096 };
  await fs.mkdir(dir, { recursive: true });
  const special = await writeTinyTokenizer(dir, { tokenizerVocab, extraSpecialTokens: INTERNVL_SPECIAL_TOKENS, chatTemplate: INTERNVL2_5_CHAT_TEMPLATE, modelMaxLength: full ? 16384 : 4096 });
  const id = (t: string) => special.get(t)!;
  const llmConfig: Record<string, unknown> = {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    vocab_size: lm.vocabSize,
    hidden_size: lm.hiddenSize,
    intermediate_size: lm.intermediateSize,
    num_hidden_layers: lm.numLayers,
    num_attention_heads: lm.numHeads,
    num_key_value_heads: lm.numKvHeads,
    hidden_act: 'silu',
    max_position_embeddings: lm.maxPositions,
    max_window_layers: lm.numLayers,
    initializer_range: initStd,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    rope_scaling: null,
    tie_word_embeddings: false,
    use_sliding_window: false,
    sliding_window: null,
    attention_dropout: 0.0,
    bos_token_id: id('<|endoftext|>'),
    eos_token_id: id('<|im_end|>'),
    use_cache: true,
    torch_dtype: torchDtype,
  };
  const visionConfig: Record<string, unknown> = { ...configFor('internvit', full ? 'internvit-300m' : 'tiny', dtype), drop_path_rate: full ? 0.1 : 0 };
  const imageSize = Number(visionConfig.image_size);
  const config: Record<string, unknown> = {
    architectures: ['InternVLChatModel'],
    auto_map: {
      AutoConfig: 'configuration_internvl_chat.InternVLChatConfig',
      AutoModel: 'modeling_internvl_chat.InternVLChatModel',
      AutoModelForCausalLM: 'modeling_internvl_chat.InternVLChatModel',
    },
    model_type: 'internvl_chat',
    downsample_ratio: 0.5,
    dynamic_image_size: true,
    force_image_size: imageSize,
    llm_config: llmConfig,
    max_dynamic_patch: 12,
    min_dynamic_patch: 1,
    ps_version: 'v2',
    select_layer: -1,
    template: 'internvl2_5',
    torch_dtype: torchDtype,
    use_backbone_lora: 0,
    use_llm_lora: 0,
    use_thumbnail: true,
    vision_config: visionConfig,
  };
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeFileAtomic(path.join(dir, 'config.json'), json(config));
  await writeFileAtomic(path.join(dir, 'preprocessor_config.json'), json(preprocessorFor('internvit', imageSize)));
  await writeFileAtomic(
    path.join(dir, 'generation_config.json'),
    json({ eos_token_id: [id('<|im_end|>'), id('<|endoftext|>')], pad_token_id: id('<|endoftext|>'), do_sample: false }),
  );
  const ivl = parseInternVLConfig(config, path.join(dir, 'config.json'));
  const decoder = parseConfig(llmConfig, `${dir}/config.json: llm_config`);
  const tower = expectedTowerTensors(await readTowerConfig(dir));
  const tensors: SafetensorsStreamTensor[] = [];
  const half = initStd * Math.sqrt(3);
  for (const [name, shape] of tower) {
    const rng = new Mulberry32(hashString(name, seed));
    const { mean, std } = initOf(name.slice('vision_model.'.length), shape);
    tensors.push({ name, shape, dtype, fill: (out) => { const v = rng.normal(out.length, std); for (let i = 0; i < out.length; i++) out[i] = mean + v[i]!; } });
  }
  for (const [name, shape] of mlp1Tensors(ivl.featureDim, decoder.hiddenSize)) {
    const rng = new Mulberry32(hashString(name, seed));
    const std = shape.length === 2 ? 1 / Math.sqrt(shape[1]!) : 0.1;
    const mean = name === 'mlp1.0.weight' ? 1 : 0;
    tensors.push({ name, shape, dtype, fill: (out) => { const v = rng.normal(out.length, std); for (let i = 0; i < out.length; i++) out[i] = mean + v[i]!; } });
  }
  for (const [name, shape] of expectedTensors(decoder)) {
    const full = `language_model.${name}`;
    const rng = new Mulberry32(hashString(full, seed));
    tensors.push({ name: full, shape, dtype, fill: name.endsWith('norm.weight') ? (out) => out.fill(1) : (out) => rng.fillSymmetric(out, half) });
  }
  await writeSafetensorsStreaming(path.join(dir, 'model.safetensors'), tensors, { metadata: { format: 'pt' } });
  return config;
}

/** Tokens of the tiny tokenizer's vocabulary that are special (rpv's and InternVL's). */
export const TINY_INTERNVL_SPECIAL_TOKENS = [...TINY_SPECIAL_TOKENS, ...INTERNVL_SPECIAL_TOKENS];
