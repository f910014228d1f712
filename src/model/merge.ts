/**
 * Fold a LoRA adapter into its base: W' = W + scaling * B A for every adapted linear, written as
 * a standard Hugging Face folder (config.json, model.safetensors in the base's float dtype, and
 * every other file of the base — tokenizer, generation config, chat template, remote-code .py
 * files — copied). An InternVL chat base gives an InternVL folder: the LoRA merged into
 * `language_model.*`, `vision_model.*` unchanged, `mlp1.*` as trained. Plain JavaScript on the
 * CPU: no tfjs backend needed. For other bases the adapter's video projector, when it has one, is
 * copied beside the merged weights (`loadProjector(model, folder)` attaches it); a Hugging Face
 * loader of the folder sees a text-only model.
 *
 * Streamed: names, shapes, dtypes and the adapter are checked from the headers first; then the
 * output file is written tensor by tensor in its final order (header first, offsets computed).
 * A tensor the merge does not change and whose dtype stays is copied as stored bytes through the
 * writer's 16 MiB buffer (read with pread, not mapped: every touched page of a mapping counts in
 * the resident set until the kernel drops it), one in another dtype converted 4M values at a time;
 * an adapted linear is decoded to float32, merged and written, then dropped. Memory: the largest
 * adapted linear in float32, plus the adapter, plus buffers, whatever the model's size.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { writeSafetensorsStreaming, type SafetensorsDType, type SafetensorsFloatDType, type SafetensorsStreamTensor } from '../util/safetensors.js';
import { parseConfig, readConfig } from './config.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROJECTOR_CONFIG, PROJECTOR_WEIGHTS, checkedWeight, parseAdapterConfig } from './adapter.js';
import { readInternVLConfig } from './internvl.js';
import { LORA_MODULES, loraScaling, type LoraModule } from './lora.js';
import { readSafetensors, type SafetensorsTensor } from '../util/safetensors.js';
import { checkWeightNames, expectedTensors, FLOAT_DTYPES, INDEX_FILE, SINGLE_FILE, WeightFolder } from './weights.js';
import { assertFiniteWeights, describeNonFinite, firstNonFinite, firstNonFiniteBits, nonFiniteValueOfBits, nonFiniteWeightError } from '../util/finite.js';
import { float16ToFloat32 } from '../util/float16.js';
import { releaseTemp, trackTemp } from '../util/atomic.js';

export interface MergeSummary {
  /** Linears changed. */
  merged: number;
  /** Tensors written. */
  tensors: number;
  dtype: SafetensorsFloatDType;
  outDir: string;
  /**
   * The video projector copied from the adapter folder beside the merged weights
   * (`projector.safetensors`, `projector_config.json`), or null: the adapter had none, so the merged
   * folder is a text-only model. InternVL folders hold it as `mlp1.*` instead (see `mlp1`).
   */
  projector: string[] | null;
  /** InternVL folders: mlp1 as trained (from the adapter folder) or as the base had it (frozen). */
  mlp1?: 'trained' | 'base';
}

/** W [out, in] += scaling * B [out, r] A [r, in], in place. */
export function addLowRank(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inF: number, r: number, scaling: number): void {
  const row = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const coef = b[o * r + k];
      if (coef === 0) continue;
      const aRow = k * inF;
      for (let i = 0; i < inF; i++) row[i] += coef * a[aRow + i];
    }
    const base = o * inF;
    for (let i = 0; i < inF; i++) w[base + i] += scaling * row[i];
  }
}

/** The adapter folder's trained mlp1 (projector_config.json type internvl_mlp1), or null when it has none (a frozen mlp1). */
async function trainedMlp1(adapterDir: string): Promise<{ file: string; tensors: Map<string, SafetensorsTensor> } | null> {
  const configFile = path.join(adapterDir, PROJECTOR_CONFIG);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await fs.readFile(configFile, 'utf8'));
  } catch {
    return null;
  }
  if (raw.projector_type !== 'internvl_mlp1') throw new RpvError(`${configFile}: projector_type ${JSON.stringify(raw.projector_type)} cannot go into an InternVL folder (its projector is mlp1: train with projector.type=internvl_mlp1)`);
  const file = path.join(adapterDir, PROJECTOR_WEIGHTS);
  return { file, tensors: (await readSafetensors(file)).tensors };
}

export interface MergeLoraOptions {
  /** Float dtype of the merged weights; default the base's (F16/BF16 if any tensor is, else F32). Rounding the merged weights to 16 bits perturbs them, as merge_and_unload in that dtype does. */
  dtype?: SafetensorsFloatDType;
  /** Called as each tensor is written (in the file's order). */
  progress?: (done: number, total: number) => void;
}

/** Bytes read and written per step when a tensor is copied or converted. */
const CHUNK_BYTES = 1 << 23;

/** What the merge writes for one base tensor. */
type Plan =
  | { kind: 'copy' }
  | { kind: 'merge'; a: Float32Array; b: Float32Array; r: number }
  | { kind: 'mlp1'; data: Float32Array };

export async function mergeLora(modelDir: string, adapterDir: string, outDir: string, { dtype: outDtype, progress }: MergeLoraOptions = {}): Promise<MergeSummary> {
  if (path.resolve(modelDir) === path.resolve(outDir)) throw new RpvError(`merge-lora: --out must differ from --model (${outDir}): the base is read while the merged model is written`);
  // An InternVL chat folder: the LoRA goes into language_model.*; the tower is copied unchanged and
  // mlp1 replaced by the adapter folder's trained one (projector.safetensors, internvl_mlp1) if any.
  const internvl = await readInternVLConfig(modelDir);
  const config = internvl ? parseConfig(internvl.llm, `${path.join(modelDir, 'config.json')}: llm_config`) : await readConfig(modelDir); // validates the architecture
  const pre = internvl ? 'language_model.' : '';
  const mlp1 = internvl ? await trainedMlp1(adapterDir) : null;
  const configFile = path.join(adapterDir, ADAPTER_CONFIG);
  let rawConfig: Record<string, unknown>;
  try {
    rawConfig = JSON.parse(await fs.readFile(configFile, 'utf8'));
  } catch (err) {
    throw new RpvError(`${configFile}: cannot read: ${(err as Error).message}`);
  }
  const lora = parseAdapterConfig(rawConfig, configFile);
  const scaling = loraScaling(lora);
  const adapterFile = path.join(adapterDir, ADAPTER_WEIGHTS);
  const { tensors: adapter } = await readSafetensors(adapterFile);
  const folder = await WeightFolder.open(modelDir);
  try {
    // The same checks as loading, from the headers, before anything is written: config and weights
    // agree, every weight a float of its shape; the adapter fits. Values are checked as they stream.
    const expected = new Map([...expectedTensors(config)].map(([n, sh]) => [pre + n, sh]));
    checkWeightNames(folder, config, expected, path.join(modelDir, 'config.json'), pre);
    const names = folder.names;
    const plans = new Map<string, Plan>();
    const stored = new Map<string, { dtype: SafetensorsDType; shape: number[] }>();
    let dtype: SafetensorsFloatDType = 'F32';
    let merged = 0;
    const used = new Set<string>();
    for (const name of names) {
      const t = folder.location(name, expected.get(name));
      stored.set(name, t);
      if (t.dtype === 'F16' || t.dtype === 'BF16') dtype = t.dtype;
      const m = name.startsWith(pre) ? /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.weight$/.exec(name.slice(pre.length)) : null;
      const module = m ? (Object.keys(LORA_MODULES) as LoraModule[]).find((k) => LORA_MODULES[k] === m[3]) : undefined;
      if (m && module && lora.targetModules.includes(module)) {
        const prefix = `base_model.model.${name.slice(pre.length).replace(/\.weight$/, '')}`;
        const aName = `${prefix}.lora_A.weight`;
        const bName = `${prefix}.lora_B.weight`;
        const a = adapter.get(aName);
        const b = adapter.get(bName);
        if (!a || !b) throw new RpvError(`${adapterFile}: missing tensor ${a ? bName : aName} (target module ${m[3]} of layer ${m[1]})`);
        checkedWeight(adapterFile, aName, a);
        checkedWeight(adapterFile, bName, b);
        const [outF, inF] = t.shape;
        const r = lora.rank;
        if (a.shape[0] !== r || a.shape[1] !== inF) throw new RpvError(`${adapterFile}: tensor ${aName}: expected shape [${r}, ${inF}], found [${a.shape.join(', ')}]`);
        if (b.shape[0] !== outF || b.shape[1] !== r) throw new RpvError(`${adapterFile}: tensor ${bName}: expected shape [${outF}, ${r}], found [${b.shape.join(', ')}]`);
        plans.set(name, { kind: 'merge', a: a.data as Float32Array, b: b.data as Float32Array, r });
        used.add(aName).add(bName);
        merged++;
      }
      const trained = mlp1?.tensors.get(name);
      if (mlp1 && name.startsWith('mlp1.')) {
        if (!trained) throw new RpvError(`${mlp1.file}: missing tensor ${name} (the base's mlp1 has it)`);
        if (trained.shape.join(',') !== t.shape.join(',')) throw new RpvError(`${mlp1.file}: tensor ${name}: expected shape [${t.shape.join(', ')}] (the base's), found [${trained.shape.join(', ')}]`);
        plans.set(name, { kind: 'mlp1', data: checkedWeight(mlp1.file, name, trained) });
      } else if (!plans.has(name)) plans.set(name, { kind: 'copy' });
    }
    const unused = [...adapter.keys()].filter((k) => !used.has(k));
    if (unused.length) throw new RpvError(`${adapterFile}: ${unused.length} adapter tensors match no base weight (first: ${unused[0]}); is this adapter for ${modelDir}?`);
    const written = outDtype ?? dtype;
    const target = path.join(outDir, SINGLE_FILE);
    const scratch = { bytes: null as Uint8Array | null };
    const tensors = names.map((name): SafetensorsStreamTensor => {
      const t = stored.get(name)!;
      const source = {
        name,
        shape: t.shape,
        plan: plans.get(name)!,
        dtype: t.dtype,
        file: folder.fileOf(name),
        // A weight the model uses is refused as read (as loading does); anything else as not written.
        isWeight: expected.has(name),
      };
      return streamTensor(folder, source, written, target, scaling, scratch);
    });
    // An interrupted or refused merge leaves nothing: the weights go through a temporary file
    // renamed at the end, and a folder this merge created is removed again.
    const existed = await fs.stat(outDir).then(() => true, () => false);
    await fs.mkdir(outDir, { recursive: true });
    if (!existed) trackTemp(outDir);
    try {
      let done = 0;
      await writeSafetensorsStreaming(target, tensors, { metadata: { format: 'pt' }, onTensor: () => progress?.(++done, names.length) });
      // Everything but the weights is copied as is (config, tokenizer, chat template, generation config).
      for (const entry of await fs.readdir(modelDir, { withFileTypes: true })) {
        if (!entry.isFile()) continue;
        if (entry.name === INDEX_FILE || entry.name.endsWith('.safetensors') || entry.name.endsWith('.bin')) continue;
        await fs.copyFile(path.join(modelDir, entry.name), path.join(outDir, entry.name));
      }
      if (written !== dtype || outDtype) {
        // config.json's torch_dtype follows the weights written.
        const cfgPath = path.join(outDir, 'config.json');
        const cfg = JSON.parse(await fs.readFile(cfgPath, 'utf8'));
        const torchName = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[written];
        if ('dtype' in cfg) cfg.dtype = torchName;
        else cfg.torch_dtype = torchName;
        await fs.writeFile(cfgPath, `${JSON.stringify(cfg, null, 2)}\n`);
      }
      // The projector is not part of a causal LM's weights: it travels beside them, as in the adapter.
      // An InternVL folder holds it as mlp1.* already.
      let projector: string[] | null = null;
      if (!internvl && (await fs.stat(path.join(adapterDir, PROJECTOR_WEIGHTS)).catch(() => null))) {
        projector = [PROJECTOR_WEIGHTS, PROJECTOR_CONFIG];
        for (const name of projector) await fs.copyFile(path.join(adapterDir, name), path.join(outDir, name));
      }
      return { merged, tensors: names.length, dtype: written, outDir, projector, mlp1: mlp1 ? 'trained' : internvl ? 'base' : undefined };
    } catch (err) {
      if (!existed) await fs.rm(outDir, { recursive: true, force: true });
      throw err;
    } finally {
      if (!existed) releaseTemp(outDir);
    }
  } finally {
    await folder.close();
  }
}

interface SourceTensor {
  name: string;
  shape: number[];
  plan: Plan;
  /** dtype stored in the base. */
  dtype: SafetensorsDType;
  /** The base file that holds it, for messages. */
  file: string;
  /** A weight of the language model (checked as read, as loadModel does). */
  isWeight: boolean;
}

/**
 * How one tensor reaches the output file: stored bytes copied (same dtype), converted chunk by
 * chunk (another float dtype), or produced whole in float32 (merged, mlp1 as trained, F64 and
 * integer tensors) and dropped once written. Values are checked on the way: a non-finite base
 * weight is refused naming its file; a non-finite value to write, or one beyond float16's range
 * when writing F16, is refused naming the output file.
 */
function streamTensor(
  folder: WeightFolder,
  t: SourceTensor,
  written: SafetensorsFloatDType,
  target: string,
  scaling: number,
  /** One read buffer shared by every converted tensor (tensors are written one after another). */
  scratch: { bytes: Uint8Array | null },
): SafetensorsStreamTensor {
  const count = t.shape.reduce((a, b) => a * b, 1);
  const isFloat = FLOAT_DTYPES.has(t.dtype);
  const outType = isFloat || t.plan.kind !== 'copy' ? written : 'I32';
  const refuse = (index: number, value: number): never => {
    if (t.isWeight) throw nonFiniteWeightError(t.file, t.name, index, count, value);
    throw new RpvError(`${target}: not written: ${describeNonFinite(t.name, index, count, value)} (a non-finite value would make every output NaN)`);
  };
  /** Checks values `first..` of the float32 values to write. */
  const checkValues = (values: Float32Array, first: number, inBase: boolean) => {
    const i = firstNonFinite(values);
    if (i >= 0) {
      if (inBase) refuse(first + i, values[i]!);
      throw new RpvError(`${target}: not written: ${describeNonFinite(t.name, first + i, count, values[i]!)} (a non-finite value would make every output NaN)`);
    }
    if (written !== 'F16') return;
    // float16 stops at 65504: a larger value would be written as an infinity.
    const j = values.findIndex((v) => Math.abs(v) >= 65520);
    if (j >= 0) throw new RpvError(`${target}: not written: tensor ${t.name}: value ${first + j} of ${count} is ${values[j]}, beyond float16's 65504 (merge with --dtype F32 or BF16)`);
  };
  if (t.plan.kind === 'copy' && t.dtype === outType) {
    // Unchanged: the stored bytes, scanned for non-finite values on their bits.
    let at = 0;
    const size = outType === 'F32' || outType === 'I32' ? 4 : 2;
    return {
      name: t.name, shape: t.shape, dtype: outType,
      fillBytes: async (out) => {
        await folder.readBytes(t.name, at, out);
        if (outType !== 'I32') {
          const i = firstNonFiniteBits(out, outType);
          if (i >= 0) refuse(at / size + i, nonFiniteValueOfBits(out, outType, i));
        }
        at += out.length;
      },
    };
  }
  if (t.plan.kind === 'copy' && (t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16')) {
    // Another float dtype: decoded to float32 a chunk at a time, converted by the writer.
    const size = t.dtype === 'F32' ? 4 : 2;
    let at = 0;
    return {
      name: t.name, shape: t.shape, dtype: written,
      fill: async (out) => {
        const buffer = (scratch.bytes ??= new Uint8Array(CHUNK_BYTES));
        for (let k = 0; k < out.length; ) {
          const n = Math.min(out.length - k, buffer.length / size);
          const bytes = buffer.subarray(0, n * size);
          await folder.readBytes(t.name, (at + k) * size, bytes);
          const part = out.subarray(k, k + n);
          if (t.dtype === 'F32') part.set(new Float32Array(bytes.buffer, 0, n));
          else if (t.dtype === 'F16') float16ToFloat32(new Uint16Array(bytes.buffer, 0, n), part);
          else {
            const src = new Uint16Array(bytes.buffer, 0, n);
            const bits = new Uint32Array(part.buffer, part.byteOffset, n);
            for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
          }
          k += n;
        }
        checkValues(out, at, true);
        at += out.length;
      },
    };
  }
  // Produced whole, when the writer first asks for it, and dropped once written.
  let data: Float32Array | Int32Array | null = null;
  let at = 0;
  const produce = async (): Promise<Float32Array | Int32Array> => {
    if (t.plan.kind === 'mlp1') return t.plan.data;
    const base = await folder.read(t.name);
    if (t.plan.kind === 'copy') return base.data;
    assertFiniteWeights(t.file, t.name, base.data);
    const w = base.data as Float32Array;
    const [outF, inF] = t.shape;
    addLowRank(w, t.plan.a, t.plan.b, outF!, inF!, t.plan.r, scaling);
    return w;
  };
  const next = async (n: number) => {
    if (!data) {
      data = await produce();
      // A base tensor (not merged) holding a non-finite value is the base's fault, as read.
      if (data instanceof Float32Array) checkValues(data, 0, t.plan.kind === 'copy');
    }
    const part = data.subarray(at, at + n);
    at += n;
    if (at === count) data = null;
    return part;
  };
  if (outType === 'I32') {
    return {
      name: t.name, shape: t.shape, dtype: 'I32',
      fillBytes: async (out) => {
        const part = await next(out.length / 4);
        out.set(new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
      },
    };
  }
  return { name: t.name, shape: t.shape, dtype: written, fill: async (out) => out.set(await next(out.length)) };
}
