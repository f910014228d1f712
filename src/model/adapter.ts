/**
 * Saving and loading what training produces, in the formats other tools read:
 * - LoRA: `adapter_model.safetensors` with PEFT's key names and PyTorch shapes (lora_A [r, in],
 *   lora_B [out, r]), metadata {"format": "pt"}, and `adapter_config.json` as PEFT's LoraConfig
 *   writes it, so `PeftModel.from_pretrained(base, dir)` loads it.
 * - Projector: `projector.safetensors` (keys `projector.0.weight` [hidden, featureDim], `.0.bias`,
 *   `.2.weight`, `.2.bias`, as an nn.Sequential(Linear, GELU, Linear) named `projector`), or for
 *   an InternVL base InternVL's `mlp1.{0,1,3}.*` (LayerNorm, Linear, GELU, Linear), and
 *   `projector_config.json`.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput, type SafetensorsTensor } from '../util/safetensors.js';
import type { CausalLM } from './decoder.js';
import { LORA_MODULES, normalizeTargetModules, type LoraConfig } from './lora.js';
import { projectorTensorNames, type Projector, type ProjectorConfig } from './projector.js';
import { assertFloatDType, WeightFolder } from './weights.js';
import { assertFiniteToWrite, assertFiniteWeights } from '../util/finite.js';

export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';
export const PROJECTOR_WEIGHTS = 'projector.safetensors';
export const PROJECTOR_CONFIG = 'projector_config.json';

/** adapter_config.json as PEFT (>= 0.10) writes it for a LoRA on a causal LM. */
export function peftAdapterConfig(config: LoraConfig, baseModelNameOrPath: string): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModelNameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: config.rank,
    rank_pattern: {},
    revision: null,
    target_modules: normalizeTargetModules(config.targetModules).map((m) => LORA_MODULES[m]),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: config.useRslora,
  };
}

/** 2-D transpose of row-major data [rows, cols] -> [cols, rows]. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  return out;
}

async function readVar(v: tfc.Variable): Promise<Float32Array> {
  return (await v.data()) as Float32Array;
}

/** LoRA weights in PEFT names and PyTorch shapes. */
export async function adapterTensors(model: CausalLM): Promise<Map<string, SafetensorsInput>> {
  const tensors = new Map<string, SafetensorsInput>();
  for (const p of model.loraPairs()) {
    const r = p.aT.shape[1] as number;
    tensors.set(`${p.name}.lora_A.weight`, { shape: [r, p.inFeatures], data: transpose2d(await readVar(p.aT), p.inFeatures, r) });
    tensors.set(`${p.name}.lora_B.weight`, { shape: [p.outFeatures, r], data: transpose2d(await readVar(p.bT), r, p.outFeatures) });
  }
  return tensors;
}

export interface SaveAdapterOptions {
  /** base_model_name_or_path; default the folder the model was loaded from. */
  baseModelNameOrPath?: string;
}

/** Write the LoRA (if any) and the projector (if any) into `dir`. */
export async function saveAdapter(model: CausalLM, dir: string, { baseModelNameOrPath }: SaveAdapterOptions = {}): Promise<void> {
  if (!model.lora && !model.projector) throw new RpvError('saveAdapter: the model has neither LoRA nor a projector to save');
  await fs.mkdir(dir, { recursive: true });
  if (model.lora) {
    const tensors = await adapterTensors(model);
    assertFiniteToWrite(path.join(dir, ADAPTER_WEIGHTS), tensors);
    await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors, { metadata: { format: 'pt' } });
    const config = peftAdapterConfig(model.lora.config, baseModelNameOrPath ?? (model.dir ? path.resolve(model.dir) : ''));
    await writeFileAtomic(path.join(dir, ADAPTER_CONFIG), `${JSON.stringify(config, null, 2)}\n`);
  }
  if (model.projector) await saveProjector(model, dir);
}

export async function saveProjector(model: CausalLM, dir: string): Promise<void> {
  const p = model.projector;
  if (!p) throw new RpvError('saveProjector: the model has no projector');
  const { featureDim: d, hiddenSize: h } = p.config;
  const tensors = new Map<string, SafetensorsInput>();
  for (const t of projectorTensorNames(p)) {
    const data = await readVar(t.variable);
    tensors.set(t.name, { shape: t.shape, data: t.transposed ? transpose2d(data, t.shape[1]!, t.shape[0]!) : data });
  }
  assertFiniteToWrite(path.join(dir, PROJECTOR_WEIGHTS), tensors);
  await writeSafetensors(path.join(dir, PROJECTOR_WEIGHTS), tensors, { metadata: { format: 'pt' } });
  const config = { projector_type: p.config.type, feature_dim: d, hidden_size: h, video_token_id: model.videoTokenId ?? null };
  await writeFileAtomic(path.join(dir, PROJECTOR_CONFIG), `${JSON.stringify(config, null, 2)}\n`);
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RpvError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
}

/** Parse a PEFT adapter_config.json into rpv's LoraConfig, rejecting what rpv cannot apply. */
export function parseAdapterConfig(raw: Record<string, unknown>, where: string): LoraConfig {
  if (raw.peft_type !== 'LORA') throw new RpvError(`${where}: peft_type ${JSON.stringify(raw.peft_type)} is not supported (expected LORA)`);
  const r = raw.r;
  if (!(typeof r === 'number' && Number.isInteger(r) && r >= 1)) throw new RpvError(`${where}: field r: expected a positive integer, found ${JSON.stringify(r)}`);
  const targets = raw.target_modules;
  if (!Array.isArray(targets)) throw new RpvError(`${where}: field target_modules: expected a list of module names, found ${JSON.stringify(targets)}`);
  if (raw.bias !== undefined && raw.bias !== 'none') throw new RpvError(`${where}: field bias: only "none" is supported, found ${JSON.stringify(raw.bias)}`);
  if (raw.use_dora === true) throw new RpvError(`${where}: use_dora: DoRA adapters are not supported`);
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const v = raw[key];
    if (v && typeof v === 'object' && Object.keys(v).length) throw new RpvError(`${where}: field ${key}: per-module ranks/alphas are not supported`);
  }
  return {
    rank: r,
    alpha: typeof raw.lora_alpha === 'number' ? raw.lora_alpha : 8,
    dropout: typeof raw.lora_dropout === 'number' ? raw.lora_dropout : 0,
    targetModules: normalizeTargetModules(targets as string[]),
    useRslora: raw.use_rslora === true,
  };
}

function tensorOf(tensors: Map<string, SafetensorsTensor>, name: string, shape: number[], file: string): Float32Array {
  // PEFT strips the adapter name on save; accept files that kept it (`.lora_A.default.weight`).
  const t = tensors.get(name) ?? tensors.get(name.replace(/\.weight$/, '.default.weight'));
  if (!t) throw new RpvError(`${file}: missing tensor ${name}`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new RpvError(`${file}: tensor ${name}: expected shape [${shape.join(', ')}], found [${t.shape.join(', ')}]`);
  }
  return checkedWeight(file, name, t);
}

/** A read tensor's values once it is known to be a float weight with finite values (errors name file and tensor). */
export function checkedWeight(file: string, name: string, t: SafetensorsTensor): Float32Array {
  assertFloatDType(file, name, t.dtype);
  assertFiniteWeights(file, name, t.data);
  return t.data as Float32Array;
}

/** Add the LoRA saved in `dir` (adapter_config.json + adapter_model.safetensors) to the model. */
export async function loadAdapter(model: CausalLM, dir: string): Promise<LoraConfig> {
  const configFile = path.join(dir, ADAPTER_CONFIG);
  const config = parseAdapterConfig(await readJson(configFile), configFile);
  const file = path.join(dir, ADAPTER_WEIGHTS);
  const { tensors } = await readSafetensors(file);
  model.addLora(config);
  const tf = model.tf;
  for (const p of model.loraPairs()) {
    const r = config.rank;
    const a = tensorOf(tensors, `${p.name}.lora_A.weight`, [r, p.inFeatures], file);
    const b = tensorOf(tensors, `${p.name}.lora_B.weight`, [p.outFeatures, r], file);
    tf.tidy(() => {
      p.aT.assign(tf.tensor2d(transpose2d(a, r, p.inFeatures), [p.inFeatures, r]));
      p.bT.assign(tf.tensor2d(transpose2d(b, p.outFeatures, r), [r, p.outFeatures]));
    });
  }
  return config;
}

/** Add the projector saved in `dir` (projector_config.json + projector.safetensors) to the model. */
export async function loadProjector(model: CausalLM, dir: string): Promise<ProjectorConfig> {
  const configFile = path.join(dir, PROJECTOR_CONFIG);
  const raw = await readJson(configFile);
  const featureDim = raw.feature_dim;
  if (!(typeof featureDim === 'number' && featureDim >= 1)) throw new RpvError(`${configFile}: field feature_dim: expected a positive integer, found ${JSON.stringify(featureDim)}`);
  if (raw.hidden_size !== model.config.hiddenSize) {
    throw new RpvError(`${configFile}: hidden_size ${raw.hidden_size} does not match the model's hidden_size ${model.config.hiddenSize}`);
  }
  const type = raw.projector_type;
  if (type !== 'mlp2x_gelu' && type !== 'internvl_mlp1') throw new RpvError(`${configFile}: projector_type ${JSON.stringify(type)} is not supported (supported: mlp2x_gelu, internvl_mlp1)`);
  const p = model.addProjector({ featureDim, type });
  const file = path.join(dir, PROJECTOR_WEIGHTS);
  const { tensors } = await readSafetensors(file);
  assignProjector(model, p, (name, shape) => tensorOf(tensors, name, shape, file));
  return p.config;
}

/** Sets every projector variable from `read(name, shape)`, PyTorch names and layout (projectorTensorNames). */
export function assignProjector(model: CausalLM, p: Projector, read: (name: string, shape: number[]) => Float32Array): void {
  const tf = model.tf;
  for (const t of projectorTensorNames(p)) {
    const data = read(t.name, t.shape);
    tf.tidy(() => {
      if (t.transposed) t.variable.assign(tf.tensor2d(transpose2d(data, t.shape[0]!, t.shape[1]!), [t.shape[1]!, t.shape[0]!]));
      else t.variable.assign(tf.tensor(data, t.shape));
    });
  }
}

/**
 * InternVL's `mlp1` as the model's projector (type internvl_mlp1), initialised from the folder's
 * pretrained weights (model.dir, checked for shape, float dtype and finite values).
 */
export async function loadInternVLProjector(model: CausalLM): Promise<Projector> {
  const ivl = model.internvl;
  if (!ivl || !model.dir) throw new RpvError('loadInternVLProjector: the model was not loaded from an InternVL folder');
  const folder = await WeightFolder.open(model.dir);
  try {
    const p = model.addProjector({ featureDim: ivl.featureDim, type: 'internvl_mlp1' });
    const values = new Map<string, Float32Array>();
    for (const t of projectorTensorNames(p)) {
      await folder.assertFinite(t.name);
      values.set(t.name, Float32Array.from((await folder.read(t.name, t.shape)).data as ArrayLike<number>));
    }
    assignProjector(model, p, (name) => values.get(name)!);
    return p;
  } finally {
    await folder.close();
  }
}

/** Whether `dir` holds a LoRA, a projector, or both. */
export async function adapterContents(dir: string): Promise<{ lora: boolean; projector: boolean }> {
  const exists = (f: string) => fs.stat(path.join(dir, f)).then(() => true, () => false);
  return { lora: await exists(ADAPTER_CONFIG), projector: await exists(PROJECTOR_CONFIG) };
}
