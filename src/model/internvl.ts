/**
 * InternVL chat folders (`InternVLChatModel`, model_type `internvl_chat`) as rpv reads them: the
 * language model under `language_model.` (its config in `llm_config`), the projector `mlp1`
 * (LayerNorm over the pixel-shuffled channels, Linear, GELU, Linear) and the vision tower under
 * `vision_model.` (src/vision reads it). The prompt pieces InternVL's video chat writes: each
 * frame as `Frame{i}: <img>` + tokens x `<IMG_CONTEXT>` + `</img>` and a newline.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';

export const INTERNVL_MODEL_TYPE = 'internvl_chat';
/** The token whose positions take the projected frame features. */
export const IMG_CONTEXT = '<IMG_CONTEXT>';
export const IMG_START = '<img>';
export const IMG_END = '</img>';
/** Special tokens InternVL adds to its language model's tokenizer, in id order. */
export const INTERNVL_SPECIAL_TOKENS = ['<img>', '</img>', '<IMG_CONTEXT>', '<quad>', '</quad>', '<ref>', '</ref>', '<box>', '</box>'] as const;
/** System message of InternVL's `internvl2_5` conversation template. */
export const INTERNVL2_5_SYSTEM = '你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。';
/** Language model architectures rpv runs as InternVL's `language_model`. */
const LLM_ARCHITECTURES: Record<string, string> = { Qwen2ForCausalLM: 'qwen2', LlamaForCausalLM: 'llama' };

export interface InternVLConfig {
  /** `llm_config`, as a language model's config.json. */
  llm: Record<string, unknown>;
  template: string;
  selectLayer: number;
  downsampleRatio: number;
  /** The tower's hidden size (vision_config.hidden_size). */
  visionHidden: number;
  /** mlp1's input: visionHidden / downsampleRatio². */
  featureDim: number;
  /** Tokens per frame: (image_size / patch_size · downsampleRatio)². */
  tokensPerFrame: number;
}

type Json = Record<string, unknown>;

export function isInternVL(raw: Json): boolean {
  return raw.model_type === INTERNVL_MODEL_TYPE;
}

/** The InternVL parts of a parsed config.json (`where` names the file); InternLM2 language models are refused with the reason. */
export function parseInternVLConfig(raw: Json, where: string): InternVLConfig {
  const llm = raw.llm_config as Json | undefined;
  const vision = raw.vision_config as Json | undefined;
  if (!llm || typeof llm !== 'object') throw new RpvError(`${where}: model_type internvl_chat without llm_config`);
  if (!vision || typeof vision !== 'object') throw new RpvError(`${where}: model_type internvl_chat without vision_config`);
  const arch = Array.isArray(llm.architectures) ? String(llm.architectures[0]) : '';
  const modelType = String(llm.model_type ?? LLM_ARCHITECTURES[arch] ?? '');
  if (modelType === 'internlm2' || arch === 'InternLM2ForCausalLM') {
    throw new RpvError(
      `${where}: llm_config: InternLM2 language models (InternVL2.5-2B, -8B, -26B) are not supported: rpv's decoder has separate q/k/v and gate/up/down projections, InternLM2 fuses them (wqkv, w1/w2/w3 with interleaved heads); use InternVL2.5-1B or -4B (Qwen2.5)`,
    );
  }
  if (modelType !== 'qwen2' && modelType !== 'llama') throw new RpvError(`${where}: llm_config: model_type ${JSON.stringify(modelType || null)} is not a language model rpv runs (qwen2, llama)`);
  const num = (o: Json, key: string, fallback: number | undefined, w: string) => {
    const v = o[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new RpvError(`${w}: field ${key}: expected a number, found ${JSON.stringify(o[key] ?? null)}`);
    return v;
  };
  const ps = raw.ps_version ?? 'v1';
  if (ps !== 'v2') throw new RpvError(`${where}: ps_version ${JSON.stringify(ps)}: rpv implements InternVL's pixel shuffle v2 only (v1 leaves the grid transposed)`);
  const downsampleRatio = num(raw, 'downsample_ratio', 0.5, where);
  const k = Math.round(1 / downsampleRatio);
  if (Math.abs(k * downsampleRatio - 1) > 1e-9) throw new RpvError(`${where}: downsample_ratio ${downsampleRatio} is not 1/k for a whole k`);
  const visionHidden = num(vision, 'hidden_size', undefined, `${where}: vision_config`);
  const imageSize = num(raw, 'force_image_size', num(vision, 'image_size', undefined, `${where}: vision_config`), where);
  const patch = num(vision, 'patch_size', undefined, `${where}: vision_config`);
  const side = Math.floor(imageSize / patch) / k;
  return {
    llm: { ...llm, model_type: modelType },
    template: String(raw.template ?? 'internvl2_5'),
    selectLayer: num(raw, 'select_layer', -1, where),
    downsampleRatio,
    visionHidden,
    featureDim: visionHidden * k * k,
    tokensPerFrame: side * side,
  };
}

/** config.json of `dir` when it is an InternVL chat folder, else null. */
export async function readInternVLConfig(dir: string): Promise<InternVLConfig | null> {
  const file = path.join(dir, 'config.json');
  let raw: Json;
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8')) as Json;
  } catch {
    return null;
  }
  return raw && isInternVL(raw) ? parseInternVLConfig(raw, file) : null;
}

/** mlp1's tensors, PyTorch shapes: `0` LayerNorm(featureDim), `1` Linear(featureDim -> hidden), `3` Linear(hidden -> hidden). */
export function mlp1Tensors(featureDim: number, hidden: number): Map<string, number[]> {
  return new Map([
    ['mlp1.0.weight', [featureDim]],
    ['mlp1.0.bias', [featureDim]],
    ['mlp1.1.weight', [hidden, featureDim]],
    ['mlp1.1.bias', [hidden]],
    ['mlp1.3.weight', [hidden, hidden]],
    ['mlp1.3.bias', [hidden]],
  ]);
}

/** One frame as InternVL's video chat writes it: `Frame{i}: <img>`, the context tokens, `</img>` (i from 1). */
export function internvlFrameText(index: number): { before: string; after: string } {
  return { before: `Frame${index}: ${IMG_START}`, after: `${IMG_END}\n` };
}
