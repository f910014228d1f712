/**
 * The families of vision towers rpv reads, as one table: how config.json names them, which
 * switches of the shared encoder block (src/model/block.ts) each uses, and one name map per
 * family from the block's parts to the checkpoint's tensor names.
 *
 *   family     config.json                                           prefix          switches
 *   clip       CLIPVisionModel (clip_vision_model), CLIPModel        vision_model.   class token, pre-LayerNorm
 *              (clip: vision_config)                                                 (`pre_layrnorm`, HF's spelling),
 *                                                                                    quick_gelu, q/k/v/out_proj
 *   siglip     SiglipVisionModel (siglip_vision_model), SiglipModel  vision_model.   no class token, patch bias,
 *              (siglip: vision_config)                                               gelu_pytorch_tanh; the
 *                                                                                    attention-pooling head unused
 *   internvit  InternVisionModel (intern_vit_6b), InternVL chat      '' or           class token, patch bias, fused
 *              (internvl_chat: vision_config, select_layer,          vision_model.   qkv, ls1/ls2, LayerNorm or
 *              downsample_ratio, ps_version)                                         RMSNorm + qk-norm (6B)
 *
 * Post-LayerNorm (CLIP, SigLIP) is never applied: features are transformers' `hidden_states[layer]`
 * (see types.ts). CLIP's `last_hidden_state` equals hidden_states[-1]; SigLIP's `last_hidden_state`
 * is post_layernorm(hidden_states[-1]), which rpv does not produce; InternViT has no post-norm, so
 * layer -1 is InternVL's extract_feature with select_layer -1 (last_hidden_state).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { geluKind, type GeluKind } from '../model/gelu.js';
import type { TowerFamily } from './types.js';

export interface TowerConfig {
  family: TowerFamily;
  /** config.json's model_type (the vision half's when nested). */
  modelType: string;
  /** Prefix of every tensor name. */
  prefix: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  imageSize: number;
  patchSize: number;
  eps: number;
  act: GeluKind;
  classToken: boolean;
  preNorm: boolean;
  patchBias: boolean;
  fusedQkv: boolean;
  qkvBias: boolean;
  layerScale: boolean;
  norm: 'layer' | 'rms';
  qkNorm: boolean;
  /** Default `layer` (InternVL's select_layer; -2 for CLIP as LLaVA uses it). */
  defaultLayer: number;
  /** Default `shuffle` (InternVL's downsample_ratio, 0.5 for a bare InternViT; 1 otherwise). */
  defaultShuffle: number;
}

type Json = Record<string, unknown>;

function field<T>(cfg: Json, key: string, fallback: T | undefined, where: string, kind: 'number' | 'string' | 'boolean'): T {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback === undefined) throw new RpvError(`${where}: missing field ${key}`);
    return fallback;
  }
  if (typeof v !== kind) throw new RpvError(`${where}: field ${key} must be a ${kind}, found ${JSON.stringify(v)}`);
  return v as T;
}

/** Defaults of transformers' CLIPVisionConfig / SiglipVisionConfig (nested configs may omit them). */
const DEFAULTS: Record<'clip' | 'siglip', Json> = {
  clip: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 },
  siglip: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 16, hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6 },
};

/** Reads `<folder>/config.json` and detects the family, refusing others with their model_type named. */
export async function readTowerConfig(folder: string): Promise<TowerConfig> {
  const file = path.join(folder, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new RpvError(`${folder}: no config.json (expected a Hugging Face model folder)`);
  }
  let top: Json;
  try {
    top = JSON.parse(text) as Json;
  } catch (err) {
    throw new RpvError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  const modelType = String(top.model_type ?? '');
  const arch = Array.isArray(top.architectures) ? String(top.architectures[0]) : '';
  const nested = (key: string): Json => {
    const v = top[key];
    if (!v || typeof v !== 'object') throw new RpvError(`${file}: model_type ${modelType} without ${key}`);
    return v as Json;
  };
  if (modelType === 'clip_vision_model' || modelType === 'clip' || arch.startsWith('CLIPVision')) {
    const cfg = modelType === 'clip' ? nested('vision_config') : top;
    return fromHf('clip', modelType === 'clip' ? 'clip_vision_model' : modelType, cfg, modelType === 'clip' ? `${file}: vision_config` : file, { prefix: 'vision_model.', defaultLayer: -2, defaultShuffle: 1 });
  }
  if (modelType === 'siglip_vision_model' || modelType === 'siglip' || arch.startsWith('SiglipVision')) {
    const cfg = modelType === 'siglip' ? nested('vision_config') : top;
    return fromHf('siglip', modelType === 'siglip' ? 'siglip_vision_model' : modelType, cfg, modelType === 'siglip' ? `${file}: vision_config` : file, { prefix: 'vision_model.', defaultLayer: -1, defaultShuffle: 1 });
  }
  if (modelType === 'intern_vit_6b' || arch === 'InternVisionModel') {
    return fromHf('internvit', 'intern_vit_6b', top, file, { prefix: '', defaultLayer: -1, defaultShuffle: 0.5 });
  }
  if (modelType === 'internvl_chat') {
    const ps = top.ps_version ?? 'v1';
    if (ps !== 'v2') throw new RpvError(`${file}: ps_version ${JSON.stringify(ps)}: rpv implements InternVL's pixel shuffle v2 only (v1 leaves the grid transposed)`);
    const layer = field<number>(top, 'select_layer', -1, file, 'number');
    const ratio = field<number>(top, 'downsample_ratio', 0.5, file, 'number');
    return fromHf('internvit', 'intern_vit_6b', nested('vision_config'), `${file}: vision_config`, { prefix: 'vision_model.', defaultLayer: layer, defaultShuffle: ratio });
  }
  throw new RpvError(`${file}: model_type ${JSON.stringify(modelType || null)} is not a vision tower rpv reads (clip, clip_vision_model, siglip, siglip_vision_model, intern_vit_6b, internvl_chat)`);
}

function fromHf(family: TowerFamily, modelType: string, raw: Json, where: string, extra: { prefix: string; defaultLayer: number; defaultShuffle: number }): TowerConfig {
  const cfg: Json = family === 'internvit' ? raw : { ...DEFAULTS[family], ...raw };
  const num = (key: string, fallback?: number) => field<number>(cfg, key, fallback, where, 'number');
  const hiddenSize = num('hidden_size');
  const numHeads = num('num_attention_heads');
  if (hiddenSize % numHeads !== 0) throw new RpvError(`${where}: hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`);
  const imageSize = num('image_size');
  const patchSize = num('patch_size');
  if (patchSize < 1 || patchSize > imageSize) throw new RpvError(`${where}: patch_size ${patchSize} must be between 1 and image_size ${imageSize}`);
  const act = geluKind(field<string>(cfg, 'hidden_act', family === 'internvit' ? 'gelu' : undefined, where, 'string'), where);
  let norm: 'layer' | 'rms' = 'layer';
  let qkNorm = false;
  if (family === 'internvit') {
    const normType = field<string>(cfg, 'norm_type', 'rms_norm', where, 'string');
    if (normType !== 'layer_norm' && normType !== 'rms_norm') throw new RpvError(`${where}: norm_type "${normType}" is not layer_norm or rms_norm`);
    norm = normType === 'layer_norm' ? 'layer' : 'rms';
    qkNorm = field<boolean>(cfg, 'qk_normalization', false, where, 'boolean');
  }
  return {
    family,
    modelType,
    prefix: extra.prefix,
    hiddenSize,
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads,
    headDim: hiddenSize / numHeads,
    imageSize,
    patchSize,
    eps: num('layer_norm_eps', 1e-6),
    act,
    classToken: family !== 'siglip',
    preNorm: family === 'clip',
    patchBias: family !== 'clip',
    fusedQkv: family === 'internvit',
    qkvBias: family === 'internvit' ? field<boolean>(cfg, 'qkv_bias', true, where, 'boolean') : true,
    layerScale: family === 'internvit',
    norm,
    qkNorm,
    defaultLayer: extra.defaultLayer,
    defaultShuffle: extra.defaultShuffle,
  };
}

/**
 * Patches per side: floor(image_size / patch_size), as the stride-P convolution gives (SigLIP
 * so400m-patch14-384: 27, the last 6 pixel rows and columns unread).
 */
export function gridSize(c: Pick<TowerConfig, 'imageSize' | 'patchSize'>): number {
  return Math.floor(c.imageSize / c.patchSize);
}

/** Tensor names of one block's parts (the family's name map). */
export interface BlockNames {
  norm1: string;
  norm2: string;
  /** Linear prefixes (`.weight` / `.bias` appended). */
  qkv?: string;
  q?: string;
  k?: string;
  v?: string;
  o: string;
  qNorm?: string;
  kNorm?: string;
  fc1: string;
  fc2: string;
  ls1?: string;
  ls2?: string;
}

export interface TowerNames {
  /** Conv2d weight [width, 3, P, P] (+ `.bias`). */
  patch: string;
  /** [width] (CLIP) or [1, 1, width] (InternViT). */
  classToken?: string;
  /** [positions, width] (CLIP, SigLIP `.weight` of an Embedding) or [1, positions, width] (InternViT). */
  positions: string;
  preNorm?: string;
  block(i: number): BlockNames;
}

/** The name map of each family (prefix included). */
export function towerNames(c: TowerConfig): TowerNames {
  const p = c.prefix;
  if (c.family === 'internvit') {
    return {
      patch: `${p}embeddings.patch_embedding`,
      classToken: `${p}embeddings.class_embedding`,
      positions: `${p}embeddings.position_embedding`,
      block: (i) => {
        const b = `${p}encoder.layers.${i}`;
        return {
          norm1: `${b}.norm1`, norm2: `${b}.norm2`, qkv: `${b}.attn.qkv`, o: `${b}.attn.proj`,
          qNorm: c.qkNorm ? `${b}.attn.q_norm` : undefined, kNorm: c.qkNorm ? `${b}.attn.k_norm` : undefined,
          fc1: `${b}.mlp.fc1`, fc2: `${b}.mlp.fc2`, ls1: `${b}.ls1`, ls2: `${b}.ls2`,
        };
      },
    };
  }
  // CLIP and SigLIP share transformers' encoder layer names.
  return {
    patch: `${p}embeddings.patch_embedding`,
    classToken: c.classToken ? `${p}embeddings.class_embedding` : undefined,
    positions: `${p}embeddings.position_embedding.weight`,
    preNorm: c.preNorm ? `${p}pre_layrnorm` : undefined,
    block: (i) => {
      const b = `${p}encoder.layers.${i}`;
      return {
        norm1: `${b}.layer_norm1`, norm2: `${b}.layer_norm2`,
        q: `${b}.self_attn.q_proj`, k: `${b}.self_attn.k_proj`, v: `${b}.self_attn.v_proj`, o: `${b}.self_attn.out_proj`,
        fc1: `${b}.mlp.fc1`, fc2: `${b}.mlp.fc2`,
      };
    },
  };
}

/** Every tensor the tower reads, with its PyTorch shape. */
export function expectedTowerTensors(c: TowerConfig): Map<string, number[]> {
  const n = towerNames(c);
  const D = c.hiddenSize;
  const I = c.intermediateSize;
  const grid = gridSize(c);
  const positions = grid * grid + (c.classToken ? 1 : 0);
  const m = new Map<string, number[]>();
  m.set(`${n.patch}.weight`, [D, 3, c.patchSize, c.patchSize]);
  if (c.patchBias) m.set(`${n.patch}.bias`, [D]);
  if (n.classToken) m.set(n.classToken, c.family === 'internvit' ? [1, 1, D] : [D]);
  m.set(n.positions, c.family === 'internvit' ? [1, positions, D] : [positions, D]);
  const norm = (name: string, width = D) => {
    m.set(`${name}.weight`, [width]);
    if (c.norm === 'layer') m.set(`${name}.bias`, [width]);
  };
  const linear = (name: string, out: number, inp: number, bias: boolean) => {
    m.set(`${name}.weight`, [out, inp]);
    if (bias) m.set(`${name}.bias`, [out]);
  };
  if (n.preNorm) norm(n.preNorm);
  for (let i = 0; i < c.numLayers; i++) {
    const b = n.block(i);
    norm(b.norm1);
    norm(b.norm2);
    if (b.qkv) linear(b.qkv, 3 * D, D, c.qkvBias);
    else for (const x of [b.q!, b.k!, b.v!]) linear(x, D, D, true);
    linear(b.o, D, D, true);
    if (b.qNorm) m.set(`${b.qNorm}.weight`, [D]);
    if (b.kNorm) m.set(`${b.kNorm}.weight`, [D]);
    linear(b.fc1, I, D, true);
    linear(b.fc2, D, I, true);
    if (b.ls1) m.set(b.ls1, [D]);
    if (b.ls2) m.set(b.ls2, [D]);
  }
  return m;
}
