// The whole-model merge as it was before merge-lora streamed (src/model/merge.ts at 0c780ad):
// every tensor of the base decoded to float32 and held at once, then one encodeSafetensors. Kept
// here only as the reference the streamed merge must match byte for byte (merge-stream.test.ts).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../../src/util/errors.js';
import { writeSafetensors, type SafetensorsFloatDType, type SafetensorsInput } from '../../src/util/safetensors.js';
import { parseConfig, readConfig } from '../../src/model/config.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROJECTOR_CONFIG, PROJECTOR_WEIGHTS, checkedWeight, parseAdapterConfig } from '../../src/model/adapter.js';
import { readInternVLConfig } from '../../src/model/internvl.js';
import { LORA_MODULES, loraScaling, type LoraModule } from '../../src/model/lora.js';
import { readSafetensors, type SafetensorsTensor } from '../../src/util/safetensors.js';
import { checkWeightNames, expectedTensors, INDEX_FILE, SINGLE_FILE, WeightFolder } from '../../src/model/weights.js';
import { assertFiniteToWrite, assertFiniteWeights } from '../../src/util/finite.js';

interface MergeSummary {
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
function addLowRank(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inF: number, r: number, scaling: number): void {
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

interface MergeLoraOptions {
  /** Float dtype of the merged weights; default the base's (F16/BF16 if any tensor is, else F32). Rounding the merged weights to 16 bits perturbs them, as merge_and_unload in that dtype does. */
  dtype?: SafetensorsFloatDType;
  progress?: (done: number, total: number) => void;
}

export async function mergeLoraWholeModel(modelDir: string, adapterDir: string, outDir: string, { dtype: outDtype, progress }: MergeLoraOptions = {}): Promise<MergeSummary> {
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
  const out = new Map<string, SafetensorsInput>();
  let merged = 0;
  let dtype: SafetensorsFloatDType = 'F32';
  const used = new Set<string>();
  try {
    // The same checks as loading: config and weights agree, every tensor a finite float.
    const expected = new Map([...expectedTensors(config)].map(([n, sh]) => [pre + n, sh]));
    checkWeightNames(folder, config, expected, path.join(modelDir, 'config.json'), pre);
    const names = folder.names;
    let done = 0;
    for (const name of names) {
      const t = await folder.read(name, expected.get(name));
      if (expected.has(name)) assertFiniteWeights(folder.fileOf(name), name, t.data);
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
        addLowRank(t.data as Float32Array, a.data as Float32Array, b.data as Float32Array, outF, inF, r, scaling);
        used.add(aName).add(bName);
        merged++;
      }
      const trained = mlp1?.tensors.get(name);
      if (mlp1 && name.startsWith('mlp1.')) {
        if (!trained) throw new RpvError(`${mlp1.file}: missing tensor ${name} (the base's mlp1 has it)`);
        if (trained.shape.join(',') !== t.shape.join(',')) throw new RpvError(`${mlp1.file}: tensor ${name}: expected shape [${t.shape.join(', ')}] (the base's), found [${trained.shape.join(', ')}]`);
        out.set(name, { shape: t.shape, data: checkedWeight(mlp1.file, name, trained) });
      } else out.set(name, { shape: t.shape, data: t.data, dtype: t.data instanceof Int32Array ? 'I32' : undefined });
      progress?.(++done, names.length);
    }
  } finally {
    await folder.close();
  }
  const unused = [...adapter.keys()].filter((k) => !used.has(k));
  if (unused.length) throw new RpvError(`${adapterFile}: ${unused.length} adapter tensors match no base weight (first: ${unused[0]}); is this adapter for ${modelDir}?`);
  // Finite weights plus a finite low-rank product can still overflow float32.
  assertFiniteToWrite(path.join(outDir, SINGLE_FILE), out);
  const written = outDtype ?? dtype;
  if (written === 'F16') {
    // float16 stops at 65504: a larger merged value would be written as an infinity.
    for (const [name, t] of out) {
      const i = t.data.findIndex((v) => Math.abs(v) >= 65520);
      if (i >= 0) throw new RpvError(`${path.join(outDir, SINGLE_FILE)}: not written: tensor ${name}: value ${i} of ${t.data.length} is ${t.data[i]}, beyond float16's 65504 (merge with --dtype F32 or BF16)`);
    }
  }
  await fs.mkdir(outDir, { recursive: true });
  // Everything but the weights is copied as is (config, tokenizer, chat template, generation config).
  for (const entry of await fs.readdir(modelDir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    if (entry.name === INDEX_FILE || entry.name.endsWith('.safetensors') || entry.name.endsWith('.bin')) continue;
    await fs.copyFile(path.join(modelDir, entry.name), path.join(outDir, entry.name));
  }
  await writeSafetensors(path.join(outDir, SINGLE_FILE), out, { dtype: written, metadata: { format: 'pt' } });
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
  return { merged, tensors: out.size, dtype: written, outDir, projector, mlp1: mlp1 ? 'trained' : internvl ? 'base' : undefined };
}
