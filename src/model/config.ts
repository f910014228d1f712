/**
 * Decoder configuration from a Hugging Face `config.json` (Llama and Qwen2 families), with the
 * same field names and defaults as transformers' LlamaConfig / Qwen2Config.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';

export const SUPPORTED_ARCHITECTURES = ['llama', 'qwen2'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/** Rotary scaling as transformers' rope_init functions understand it. */
export interface RopeScaling {
  /** `default`, `linear` or `llama3`. */
  type: 'default' | 'linear' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

export interface DecoderConfig {
  arch: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections (Qwen2 always; Llama when `attention_bias`). */
  attentionBias: boolean;
  /** Bias on o_proj (Llama `attention_bias`; Qwen2 never). */
  outputBias: boolean;
  /** Bias on gate/up/down (Llama `mlp_bias`). */
  mlpBias: boolean;
  bosTokenId?: number;
  eosTokenId?: number | number[];
  /** The raw config.json, kept for writing merged folders. */
  raw: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function num(raw: Json, key: string, where: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new RpvError(`${where}: missing field ${key}`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RpvError(`${where}: field ${key}: expected a number, found ${JSON.stringify(v)}`);
  return v;
}

function parseRope(raw: Json, where: string): { theta: number; scaling: RopeScaling } {
  // transformers >= 4.57 (v5) moves these under rope_parameters; older files use rope_theta + rope_scaling.
  const params = (raw.rope_parameters ?? null) as Json | null;
  const scalingRaw = (params ?? raw.rope_scaling ?? null) as Json | null;
  const theta = params && typeof params.rope_theta === 'number' ? params.rope_theta : num(raw, 'rope_theta', where, 10000);
  if (!scalingRaw) return { theta, scaling: { type: 'default' } };
  const type = String(scalingRaw.rope_type ?? scalingRaw.type ?? 'default');
  const field = params ? 'rope_parameters' : 'rope_scaling';
  if (type === 'default') return { theta, scaling: { type: 'default' } };
  if (type === 'linear') return { theta, scaling: { type: 'linear', factor: num(scalingRaw, 'factor', `${where}: ${field}`) } };
  if (type === 'llama3') {
    const w = `${where}: ${field}`;
    return {
      theta,
      scaling: {
        type: 'llama3',
        factor: num(scalingRaw, 'factor', w),
        lowFreqFactor: num(scalingRaw, 'low_freq_factor', w),
        highFreqFactor: num(scalingRaw, 'high_freq_factor', w),
        originalMaxPositionEmbeddings: num(scalingRaw, 'original_max_position_embeddings', w),
      },
    };
  }
  throw new RpvError(`${where}: ${field}: unsupported rope type ${JSON.stringify(type)} (supported: default, linear, llama3)`);
}

/** Parse a config.json object; `where` names the file in errors. */
export function parseConfig(raw: Json, where = 'config.json'): DecoderConfig {
  const arch = raw.model_type;
  if (typeof arch !== 'string' || !(SUPPORTED_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new RpvError(`${where}: unsupported architecture ${JSON.stringify(arch ?? null)} (model_type); supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`);
  }
  const hiddenSize = num(raw, 'hidden_size', where);
  const numHeads = num(raw, 'num_attention_heads', where);
  const numKvHeads = num(raw, 'num_key_value_heads', where, numHeads);
  const headDim = num(raw, 'head_dim', where, hiddenSize / numHeads);
  if (!Number.isInteger(headDim)) throw new RpvError(`${where}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads} and head_dim is not given`);
  if (numHeads % numKvHeads !== 0) {
    throw new RpvError(`${where}: num_attention_heads ${numHeads} must be a multiple of num_key_value_heads ${numKvHeads} (grouped-query attention shares each key/value head among a whole number of query heads)`);
  }
  if (headDim % 2 !== 0) throw new RpvError(`${where}: head_dim ${headDim} must be even (rotary embedding rotates pairs)`);
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') throw new RpvError(`${where}: hidden_act ${JSON.stringify(act)} is not supported (rpv's MLP is SwiGLU with silu)`);
  if (raw.use_sliding_window === true) {
    throw new RpvError(`${where}: use_sliding_window true is not supported (rpv attends to every earlier position)`);
  }
  const { theta, scaling } = parseRope(raw, where);
  const attentionBiasFlag = raw.attention_bias === true;
  return {
    arch: arch as Architecture,
    vocabSize: num(raw, 'vocab_size', where),
    hiddenSize,
    intermediateSize: num(raw, 'intermediate_size', where),
    numLayers: num(raw, 'num_hidden_layers', where),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num(raw, 'rms_norm_eps', where, 1e-6),
    ropeTheta: theta,
    ropeScaling: scaling,
    maxPositionEmbeddings: num(raw, 'max_position_embeddings', where, 2048),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: arch === 'qwen2' ? true : attentionBiasFlag,
    outputBias: arch === 'qwen2' ? false : attentionBiasFlag,
    mlpBias: arch === 'llama' && raw.mlp_bias === true,
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : undefined,
    eosTokenId: (typeof raw.eos_token_id === 'number' || Array.isArray(raw.eos_token_id)) ? (raw.eos_token_id as number | number[]) : undefined,
    raw,
  };
}

/** Read and parse `<dir>/config.json`. */
export async function readConfig(dir: string): Promise<DecoderConfig> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RpvError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new RpvError(`${file}: expected a JSON object`);
  return parseConfig(raw as Json, file);
}

/** Inverse frequencies of the rotary embedding, with rope scaling applied (as transformers' rope init functions). */
export function ropeInvFreq(config: Pick<DecoderConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const dim = config.headDim;
  const half = dim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(config.ropeTheta, (2 * i) / dim);
  const s = config.ropeScaling;
  if (s.type === 'linear') for (let i = 0; i < half; i++) inv[i] /= s.factor!;
  if (s.type === 'llama3') {
    const factor = s.factor!;
    const low = s.lowFreqFactor!;
    const high = s.highFreqFactor!;
    const old = s.originalMaxPositionEmbeddings!;
    const lowWavelen = old / low;
    const highWavelen = old / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = inv[i] / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (old / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}
