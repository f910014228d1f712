/**
 * loadVisionTower: a Hugging Face vision folder -> VisionTower. Weights as the language model's
 * are (src/model/load.ts): on the wasm backend with rpv's addon the safetensors files are
 * memory-mapped and every matrix is used in place in its stored dtype (F32/F16/BF16) by the
 * native GEMM; elsewhere they are decoded to float32 tfjs tensors. Vectors (norms, biases, class
 * token, position embeddings, layer scales) are small and always float32 tensors.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import type { BlockWeights, NormWeights } from '../model/block.js';
import { describeBackend, initBackend, tfCore, type BackendName } from '../model/backend.js';
import { MappedLinear, TensorLinear, type FrozenLinear } from '../model/frozen.js';
import { modelIdentity } from '../model/identity.js';
import { mappedReason } from '../model/load.js';
import { WeightFolder } from '../model/weights.js';
import { MappedFile, type MappedDType } from '../native/frozen.js';
import { RpvError } from '../util/errors.js';
import { expectedTowerTensors, gridSize, readTowerConfig, towerNames, type TowerConfig } from './family.js';
import { formatTowerSettings } from './settings.js';
import { outputShape, resolveLayer, runTower, type TowerWeights } from './tower.js';
import type { PreprocessorConfig, TowerSettings, VisionTower } from './types.js';

export interface LoadVisionTowerOptions {
  /** Backend to initialise when none is (default auto). */
  backend?: BackendName;
  /** `auto` (default): mapped where possible; `mapped` fails with the reason when it is not; `tensors`. RPV_WEIGHTS overrides auto. */
  weights?: 'auto' | 'mapped' | 'tensors';
  /** Frames per forward pass (bounds activation memory). Default: as many as make about 2,048 tokens (at least 1). */
  framesPerPass?: number;
}

/**
 * The id loadVisionTower gives the tower of `folder` with `settings` (defaults resolved), without
 * loading it: config.json read, and the folder's weight identity (src/model/identity.ts: config,
 * headers and sampled bytes of every safetensors file, the same check resume makes of a base
 * model; it reads megabytes, not the gigabytes of an InternVL folder).
 */
export async function towerIdOf(folder: string, settings: TowerSettings = {}): Promise<string> {
  const config = await readTowerConfig(folder);
  const weights = await WeightFolder.open(folder);
  try {
    return `hf:${config.family}/${config.modelType}#${formatTowerSettings(resolveSettings(config, settings))}@${(await modelIdentity(folder)).sha256.slice(0, 16)}`;
  } finally {
    await weights.close();
  }
}

function resolveSettings(c: TowerConfig, s: TowerSettings): Required<TowerSettings> {
  const tokens = s.tokens ?? 'patches';
  return {
    layer: s.layer ?? c.defaultLayer,
    tokens,
    pool: s.pool ?? 1,
    shuffle: s.shuffle ?? (tokens === 'patches' ? c.defaultShuffle : 1),
  };
}

export async function loadVisionTower(folder: string, settings: TowerSettings = {}, options: LoadVisionTowerOptions = {}): Promise<VisionTower> {
  const config = await readTowerConfig(folder);
  const resolved = resolveSettings(config, settings);
  const where = `hf:${folder}`;
  resolveLayer(resolved.layer, config.numLayers, where);
  const shape = outputShape(config, resolved, where);
  let preprocessor: PreprocessorConfig = {};
  const preFile = path.join(folder, 'preprocessor_config.json');
  const preText = await fs.readFile(preFile, 'utf8').catch(() => null);
  if (preText !== null) {
    try {
      preprocessor = JSON.parse(preText) as PreprocessorConfig;
    } catch (err) {
      throw new RpvError(`${preFile}: not valid JSON: ${(err as Error).message}`);
    }
  }
  if (!describeBackend()) await initBackend({ backend: options.backend ?? 'auto' });
  const tf = await tfCore();
  const weights = await WeightFolder.open(folder);
  const files = new Map<string, MappedFile>();
  const created: { dispose(): void }[] = [];
  try {
    const expected = expectedTowerTensors(config);
    for (const [name, s] of expected) weights.location(name, s);
    const want = options.weights ?? (process.env.RPV_WEIGHTS as LoadVisionTowerOptions['weights']) ?? 'auto';
    if (!['auto', 'mapped', 'tensors'].includes(want)) throw new RpvError(`loadVisionTower: weights must be auto, mapped or tensors, found ${JSON.stringify(want)}`);
    const reason = want === 'tensors' ? 'tensors asked for' : mappedReason(tf, weights, expected, (shape) => shape.length >= 2 && shape[0] !== 1);
    if (want === 'mapped' && reason) throw new RpvError(`${folder}: cannot map the weights: ${reason}`);
    const mapped = reason === null;
    const read = async (name: string) => (await weights.read(name, expected.get(name))).data as Float32Array;
    const keep = <T extends { dispose(): void }>(t: T): T => {
      created.push(t);
      return t;
    };
    const vec = async (name: string) => keep(tf.tensor1d(await read(name)));
    /** A linear whose weight is stored [out, ...] (a Conv2d's [out, 3, P, P] flattens to [out, 3 P P]). */
    const linearOf = async (prefix: string, hasBias: boolean): Promise<FrozenLinear> => {
      const name = `${prefix}.weight`;
      const s = expected.get(name)!;
      const rows = s[0];
      const cols = s.slice(1).reduce((a, b) => a * b, 1);
      if (mapped) {
        const loc = weights.location(name, s);
        let file = files.get(loc.file);
        if (!file) {
          file = MappedFile.open(loc.file);
          files.set(loc.file, file);
        }
        return keep(new MappedLinear(file.matrix(loc.byteOffset, loc.dtype as MappedDType, rows, cols), hasBias ? await read(`${prefix}.bias`) : undefined));
      }
      const data = await read(name);
      const weightT = tf.tidy(() => tf.transpose(tf.tensor2d(data, [rows, cols])) as tfc.Tensor2D);
      return keep(new TensorLinear(tf, weightT, hasBias ? await vec(`${prefix}.bias`) : undefined));
    };
    const normOf = async (prefix: string, kind: 'layer' | 'rms'): Promise<NormWeights> => ({
      kind,
      weight: await vec(`${prefix}.weight`),
      bias: kind === 'layer' ? await vec(`${prefix}.bias`) : undefined,
      eps: config.eps,
    });
    const names = towerNames(config);
    const D = config.hiddenSize;
    const blocks: BlockWeights[] = [];
    // Only the blocks up to the selected hidden state are ever run: load those.
    const depth = resolveLayer(resolved.layer, config.numLayers, where);
    for (let i = 0; i < depth; i++) {
      const b = names.block(i);
      blocks.push({
        norm1: await normOf(b.norm1, config.norm),
        norm2: await normOf(b.norm2, config.norm),
        qkv: b.qkv ? await linearOf(b.qkv, config.qkvBias) : undefined,
        q: b.q ? await linearOf(b.q, true) : undefined,
        k: b.k ? await linearOf(b.k, true) : undefined,
        v: b.v ? await linearOf(b.v, true) : undefined,
        o: await linearOf(b.o, true),
        qNorm: b.qNorm ? await normOf(b.qNorm, 'rms') : undefined,
        kNorm: b.kNorm ? await normOf(b.kNorm, 'rms') : undefined,
        fc1: await linearOf(b.fc1, true),
        fc2: await linearOf(b.fc2, true),
        ls1: b.ls1 ? await vec(b.ls1) : undefined,
        ls2: b.ls2 ? await vec(b.ls2) : undefined,
      });
    }
    const positionsData = await read(names.positions);
    const tw: TowerWeights = {
      patch: await linearOf(names.patch, config.patchBias),
      classToken: names.classToken ? keep(tf.tensor2d(await read(names.classToken), [1, D])) : undefined,
      positions: keep(tf.tensor2d(positionsData, [positionsData.length / D, D])),
      preNorm: names.preNorm ? await normOf(names.preNorm, 'layer') : undefined,
      blocks,
    };
    const hash = (await modelIdentity(folder)).sha256.slice(0, 16);
    const tokensPerPass = gridSize(config) ** 2 + (config.classToken ? 1 : 0);
    const framesPerPass = Math.max(1, options.framesPerPass ?? Math.floor(2048 / tokensPerPass));
    const frameValues = 3 * config.imageSize * config.imageSize;
    let disposed = false;
    const tower: VisionTower = {
      family: config.family,
      settings: resolved,
      id: `hf:${config.family}/${config.modelType}#${formatTowerSettings(resolved)}@${hash}`,
      imageSize: config.imageSize,
      patchSize: config.patchSize,
      tokensPerFrame: shape.tokens,
      width: shape.width,
      preprocessor,
      async encode(pixels: Float32Array, frames: number): Promise<Float32Array> {
        if (disposed) throw new RpvError(`${where}: encode after dispose`);
        if (!Number.isInteger(frames) || frames < 0 || pixels.length !== frames * frameValues) {
          throw new RpvError(`${where}: encode: expected ${frames} frames of 3x${config.imageSize}x${config.imageSize} values (${frames * frameValues}), found ${pixels.length}`);
        }
        const per = shape.tokens * shape.width;
        const out = new Float32Array(frames * per);
        for (let f0 = 0; f0 < frames; f0 += framesPerPass) {
          const n = Math.min(framesPerPass, frames - f0);
          out.set(await runTower(tf, config, tw, resolved, pixels.subarray(f0 * frameValues, (f0 + n) * frameValues), n), f0 * per);
        }
        return out;
      },
      async dispose(): Promise<void> {
        if (disposed) return;
        disposed = true;
        for (const t of created) t.dispose();
        for (const f of files.values()) f.close();
        await weights.close();
      },
    };
    return tower;
  } catch (err) {
    for (const t of created) t.dispose();
    for (const f of files.values()) f.close();
    await weights.close();
    throw err;
  }
}
