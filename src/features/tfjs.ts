/**
 * `tfjs:<folder>`: a TensorFlow.js model read from a local folder as a frame encoder, e.g. a CLIP
 * vision tower converted with `tensorflowjs_converter`. Both formats are accepted:
 * `model.json` with `"format": "graph-model"` (a converted SavedModel / frozen graph) or a
 * layers model (`"format": "layers-model"`, Keras topology), plus its weight shard files.
 *
 * @tensorflow/tfjs-node cannot be installed here, so its `file://` loader is unavailable; the
 * folder is read by a small IOHandler (`folderIOHandler`) that follows model.json's
 * `weightsManifest`. The model runs on the backend `initBackend` picks (src/model/backend.ts:
 * GPU/native when present, else wasm, else cpu; or the one `backend` names, e.g. webgpu), in batches of `batchSize` frames, or of exactly
 * the batch the model's input declares when it fixes one (many converted models take [1, H, W, 3]:
 * they run frame by frame; a last short batch is padded with blank frames whose outputs are
 * dropped).
 *
 * Input: frames as float32 [n, H, W, 3], values (rgb / 255 - mean) / std (NCHW models, whose
 * input shape is [n, 3, H, W], get the transposed tensor). A model with a fixed input size gets
 * frames resized (bilinear) to it. Output: [n, dim] is one token per frame; [n, tokens, dim] is
 * kept; [n, h, w, c] becomes h*w tokens of c. Optional `rpv-encoder.json` in the folder:
 *   { "mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276], "output": "name", "inputSize": 224 }
 * (`output`: which output of a multi-output model; `inputSize`: for models without a fixed size).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { RpvError, errorMessage } from '../util/errors.js';
import type { CreateEncoderOptions, EncoderDescription, FrameEncoder } from './frame-encoder.js';

type Tf = typeof tfc;

/** Optional `rpv-encoder.json` beside model.json. */
export interface TfjsEncoderConfig {
  /** Per-channel mean subtracted after scaling to [0, 1]. Default [0, 0, 0]. */
  mean?: [number, number, number];
  /** Per-channel divisor after subtracting the mean. Default [1, 1, 1]. */
  std?: [number, number, number];
  /** Output tensor to use when the model has several (graph: node name; layers: output name). */
  output?: string;
  /** Input size for models whose input shape does not fix it. Default: the frames' size. */
  inputSize?: number;
}

interface ModelJson {
  format?: string;
  modelTopology?: Record<string, unknown>;
  weightsManifest?: Array<{ paths: string[]; weights: tfc.io.WeightsManifestEntry[] }>;
  generatedBy?: string;
  convertedBy?: string | null;
  signature?: Record<string, unknown>;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: Record<string, unknown>;
  trainingConfig?: tfc.io.TrainingConfig;
}

/**
 * An IOHandler that loads model.json and its weight shards from a local folder. `onDigest`
 * receives the sha256 (hex) of model.json followed by every weight file, for the encoder's id.
 */
export function folderIOHandler(folder: string, onDigest?: (sha256: string) => void): tfc.io.IOHandler {
  return {
    load: async (): Promise<tfc.io.ModelArtifacts> => {
      const jsonFile = path.join(folder, 'model.json');
      let json: ModelJson;
      const hash = createHash('sha256');
      try {
        const text = await fs.readFile(jsonFile, 'utf8');
        hash.update(text);
        json = JSON.parse(text) as ModelJson;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new RpvError(`encoder tfjs:${folder}: ${code === 'ENOENT' ? 'no model.json in the folder' : `cannot read model.json (${errorMessage(err)})`}`);
      }
      if (!json.modelTopology || typeof json.modelTopology !== 'object') {
        throw new RpvError(`encoder tfjs:${folder}: model.json has no modelTopology (is it a tfjs model?)`);
      }
      const specs: tfc.io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of json.weightsManifest ?? []) {
        for (const p of group.paths) {
          const file = path.resolve(folder, p);
          if (path.relative(folder, file).startsWith('..')) throw new RpvError(`encoder tfjs:${folder}: weight path ${p} leaves the model folder`);
          try {
            buffers.push(await fs.readFile(file));
          } catch (err) {
            throw new RpvError(`encoder tfjs:${folder}: weight file ${p} listed in model.json cannot be read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
          }
        }
        specs.push(...group.weights);
      }
      for (const b of buffers) hash.update(b);
      onDigest?.(hash.digest('hex'));
      const all = Buffer.concat(buffers);
      const expected = specs.reduce((s, w) => s + weightBytes(w), 0);
      if (all.length !== expected) {
        throw new RpvError(`encoder tfjs:${folder}: weight files hold ${all.length} bytes but model.json's manifest describes ${expected}`);
      }
      const artifacts: tfc.io.ModelArtifacts = {
        modelTopology: json.modelTopology as tfc.io.ModelArtifacts['modelTopology'],
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length) as ArrayBuffer,
      };
      if (json.format) artifacts.format = json.format;
      if (json.generatedBy) artifacts.generatedBy = json.generatedBy;
      if (json.convertedBy) artifacts.convertedBy = json.convertedBy;
      if (json.signature) artifacts.signature = json.signature;
      if (json.userDefinedMetadata) artifacts.userDefinedMetadata = json.userDefinedMetadata as { [key: string]: {} };
      if (json.modelInitializer) artifacts.modelInitializer = json.modelInitializer;
      if (json.trainingConfig) artifacts.trainingConfig = json.trainingConfig;
      return artifacts;
    },
  };
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, float16: 2, uint16: 2, string: 0 };

function weightBytes(w: tfc.io.WeightsManifestEntry): number {
  const n = w.shape.reduce((a, b) => a * b, 1);
  const q = w.quantization;
  if (q) return n * (q.dtype === 'float16' || q.dtype === 'uint16' ? 2 : 1);
  return n * (DTYPE_BYTES[w.dtype] ?? 4);
}

interface RunnableModel {
  kind: 'graph' | 'layers';
  inputShape: Array<number | null>;
  outputNames: string[];
  predict(x: tfc.Tensor): tfc.Tensor | tfc.Tensor[] | tfc.NamedTensorMap;
  dispose(): void;
}

/** Load `folder` as a FrameEncoder (see the module comment). */
export async function loadTfjsEncoder(folder: string, options: CreateEncoderOptions = {}): Promise<FrameEncoder> {
  const batchSize = options.batchSize ?? 16;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RpvError(`encoder tfjs:${folder}: batchSize must be a positive integer, got ${batchSize}`);
  const tf = await startTf(options.backend ?? 'auto');
  const config = await readConfig(folder);
  let digest = '';
  const handler = folderIOHandler(folder, (d) => (digest = d));
  const json = JSON.parse(await fs.readFile(path.join(folder, 'model.json'), 'utf8').catch(() => '{}')) as ModelJson;
  const isGraph = json.format === 'graph-model' || (json.format === undefined && Array.isArray((json.modelTopology as { node?: unknown } | undefined)?.node));
  let model: RunnableModel;
  try {
    model = isGraph ? await loadGraph(handler) : await loadLayers(handler);
  } catch (err) {
    if (err instanceof RpvError) throw err;
    throw new RpvError(`encoder tfjs:${folder}: cannot load the ${isGraph ? 'graph' : 'layers'} model (${errorMessage(err)})`, { cause: err });
  }
  return TfjsEncoder.create(tf, folder, model, config, batchSize, digest);
}

async function startTf(name: NonNullable<CreateEncoderOptions['backend']>): Promise<Tf> {
  try {
    const backend = (await import('../model/backend.js')) as {
      initBackend: (o: { backend?: NonNullable<CreateEncoderOptions['backend']>; log?: null }) => Promise<unknown>;
      tfCore: () => Promise<Tf>;
    };
    await backend.initBackend({ backend: name, log: null });
    return await backend.tfCore();
  } catch (err) {
    if (err instanceof RpvError) throw err;
    // Without the model's backend module: plain tfjs-core on the cpu backend.
    const tf = (await import('@tensorflow/tfjs-core')) as unknown as Tf;
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
    await tf.ready();
    return tf;
  }
}

async function loadGraph(handler: tfc.io.IOHandler): Promise<RunnableModel> {
  const { loadGraphModel } = await import('@tensorflow/tfjs-converter');
  const m = await loadGraphModel(handler);
  const input = m.inputs[0];
  if (!input || m.inputs.length !== 1) throw new RpvError(`the graph model has ${m.inputs.length} inputs; a frame encoder needs exactly one`);
  return {
    kind: 'graph',
    inputShape: (input.shape ?? []).map((d) => (d === -1 ? null : d)),
    outputNames: m.outputs.map((o) => o.name),
    predict: (x) => m.execute(x, m.outputNodes) as tfc.Tensor | tfc.Tensor[],
    dispose: () => m.dispose(),
  };
}

async function loadLayers(handler: tfc.io.IOHandler): Promise<RunnableModel> {
  const { loadLayersModel } = await import('@tensorflow/tfjs-layers');
  const m = await loadLayersModel(handler);
  if (m.inputs.length !== 1) throw new RpvError(`the layers model has ${m.inputs.length} inputs; a frame encoder needs exactly one`);
  return {
    kind: 'layers',
    inputShape: m.inputs[0]!.shape,
    outputNames: m.outputNames,
    predict: (x) => m.predict(x) as tfc.Tensor | tfc.Tensor[],
    dispose: () => m.dispose(),
  };
}

async function readConfig(folder: string): Promise<TfjsEncoderConfig> {
  const file = path.join(folder, 'rpv-encoder.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return {};
  }
  let c: TfjsEncoderConfig;
  try {
    c = JSON.parse(text) as TfjsEncoderConfig;
  } catch (err) {
    throw new RpvError(`encoder tfjs:${folder}: rpv-encoder.json is not valid JSON (${errorMessage(err)})`);
  }
  const triple = (k: 'mean' | 'std') => {
    const v = c[k];
    if (v !== undefined && !(Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) && (k === 'mean' || v.every((x) => x !== 0)))) {
      throw new RpvError(`encoder tfjs:${folder}: rpv-encoder.json: ${k} must be 3 numbers${k === 'std' ? ' (non-zero)' : ''}, got ${JSON.stringify(v)}`);
    }
  };
  triple('mean');
  triple('std');
  if (c.inputSize !== undefined && !(Number.isInteger(c.inputSize) && c.inputSize > 0)) {
    throw new RpvError(`encoder tfjs:${folder}: rpv-encoder.json: inputSize must be a positive integer, got ${JSON.stringify(c.inputSize)}`);
  }
  return c;
}

class TfjsEncoder implements FrameEncoder {
  id: string;
  /** sha256 of model.json and the weight files. */
  sha256 = '';
  featureDim = 0;
  tokensPerFrame = 0;
  private nchw: boolean;
  private fixedSize: [number, number] | null;
  /** The batch the model's input fixes (null: any). */
  private readonly modelBatch: number | null;
  /** Frames per model call: modelBatch, else batchSize. */
  private readonly callFrames: number;

  private constructor(
    private readonly tf: Tf,
    private readonly folder: string,
    private readonly model: RunnableModel,
    private readonly config: TfjsEncoderConfig,
    private readonly batchSize: number,
  ) {
    const s = model.inputShape;
    if (s.length !== 4) throw new RpvError(`encoder tfjs:${folder}: model input has shape [${s.join(', ')}]; expected 4 dimensions (frames, height, width, channels)`);
    this.modelBatch = typeof s[0] === 'number' && s[0] > 0 ? s[0] : null;
    this.callFrames = this.modelBatch ?? batchSize;
    this.nchw = s[1] === 3 && s[3] !== 3;
    const [h, w] = this.nchw ? [s[2], s[3]] : [s[1], s[2]];
    this.fixedSize = h && w ? [h, w] : null;
    const channels = this.nchw ? s[1] : s[3];
    if (channels !== null && channels !== undefined && channels !== 3) {
      throw new RpvError(`encoder tfjs:${folder}: model input has ${channels} channels; frames have 3 (RGB)`);
    }
    if (config.output && !model.outputNames.includes(config.output)) {
      throw new RpvError(`encoder tfjs:${folder}: rpv-encoder.json output "${config.output}" is not one of the model's outputs: ${model.outputNames.join(', ')}`);
    }
    this.id = `tfjs:${path.basename(path.resolve(folder))}`;
  }

  static async create(tf: Tf, folder: string, model: RunnableModel, config: TfjsEncoderConfig, batchSize: number, digest: string): Promise<TfjsEncoder> {
    const enc = new TfjsEncoder(tf, folder, model, config, batchSize);
    // Same folder name, other weights: another id. The normalisation changes the numbers too.
    const cfg = createHash('sha256').update(JSON.stringify([config.mean ?? null, config.std ?? null, config.output ?? null, config.inputSize ?? null])).digest('hex');
    enc.id = `tfjs:${path.basename(path.resolve(folder))}@${digest.slice(0, 12)}${config.mean || config.std || config.output || config.inputSize ? `+${cfg.slice(0, 6)}` : ''}`;
    enc.sha256 = digest;
    // One frame of zeros tells the output's shape, so featureDim is known before any video.
    const size = enc.fixedSize?.[0] ?? config.inputSize ?? 32;
    const probe = new Uint8Array(size * size * 3);
    const { tokens, dim } = await enc.run([probe], size);
    enc.tokensPerFrame = tokens;
    enc.featureDim = dim;
    return enc;
  }

  describe(): EncoderDescription {
    return {
      id: this.id,
      /** The `--encoder` spec that recreates this encoder. */
      spec: `tfjs:${path.resolve(this.folder)}`,
      kind: 'tfjs',
      folder: path.resolve(this.folder),
      sha256: this.sha256,
      format: this.model.kind === 'graph' ? 'graph-model' : 'layers-model',
      featureDim: this.featureDim,
      tokensPerFrame: this.tokensPerFrame,
      inputLayout: this.nchw ? 'NCHW' : 'NHWC',
      inputSize: this.fixedSize ?? this.config.inputSize ?? 'frame size',
      mean: this.config.mean ?? [0, 0, 0],
      std: this.config.std ?? [1, 1, 1],
      ...(this.config.output ? { output: this.config.output } : {}),
      batchSize: this.callFrames,
      ...(this.modelBatch !== null ? { fixedBatch: this.modelBatch } : {}),
      backend: this.tf.getBackend(),
    };
  }

  async encode(frames: Uint8Array[], frameSize: number): Promise<Float32Array> {
    const out = new Float32Array(frames.length * this.tokensPerFrame * this.featureDim);
    for (let i = 0; i < frames.length; i += this.callFrames) {
      const batch = frames.slice(i, i + this.callFrames);
      const { data, tokens, dim } = await this.run(batch, frameSize);
      if (tokens !== this.tokensPerFrame || dim !== this.featureDim) {
        throw new RpvError(
          `encoder ${this.id}: frames of ${frameSize}x${frameSize} give [${tokens}, ${dim}] per frame, not the [${this.tokensPerFrame}, ${this.featureDim}] the model gave at load; set inputSize in rpv-encoder.json`,
        );
      }
      out.set(data, i * tokens * dim);
    }
    return out;
  }

  dispose(): void {
    this.model.dispose();
  }

  private async run(frames: Uint8Array[], frameSize: number): Promise<{ data: Float32Array; tokens: number; dim: number }> {
    const tf = this.tf;
    const n = frames.length;
    // A model with a fixed batch gets exactly that many frames: blank ones after the real ones.
    const fed = this.modelBatch ?? n;
    if (n > fed) throw new Error(`unreachable: ${n} frames for a model batch of ${fed}`);
    const pixels = frameSize * frameSize * 3;
    const flat = new Float32Array(fed * pixels);
    frames.forEach((f, i) => {
      if (f.length !== pixels) throw new RpvError(`encoder ${this.id}: frame ${i} has ${f.length} bytes, expected ${frameSize}x${frameSize}x3 = ${pixels}`);
      flat.set(f, i * pixels);
    });
    const target = this.fixedSize ?? (this.config.inputSize ? [this.config.inputSize, this.config.inputSize] : null);
    const mean = this.config.mean ?? [0, 0, 0];
    const std = this.config.std ?? [1, 1, 1];
    const output = tf.tidy(() => {
      // Functional ops only: tfjs-core's chained methods (x.div) are not registered in its Node build.
      let x: tfc.Tensor = tf.div(tf.sub(tf.div(tf.tensor4d(flat, [fed, frameSize, frameSize, 3]), 255), tf.tensor1d(mean)), tf.tensor1d(std));
      if (target && (target[0] !== frameSize || target[1] !== frameSize)) x = tf.image.resizeBilinear(x as tfc.Tensor4D, target as [number, number]);
      if (this.nchw) x = tf.transpose(x, [0, 3, 1, 2]);
      const y = this.model.predict(x);
      const chosen = this.pickOutput(y);
      const s = chosen.shape;
      if (s[0] !== fed || s.length < 2 || s.length > 4) {
        throw new RpvError(`encoder ${this.id}: model output has shape [${s.join(', ')}]; expected [${fed}, dim], [${fed}, tokens, dim] or [${fed}, h, w, c]`);
      }
      const dim = s[s.length - 1]!;
      const tokens = tf.reshape(chosen, [fed, -1, dim]);
      return tf.cast(fed === n ? tokens : tf.slice(tokens, [0, 0, 0], [n, -1, -1]), 'float32');
    });
    try {
      const data = (await output.data()) as Float32Array;
      return { data, tokens: output.shape[1]!, dim: output.shape[2]! };
    } finally {
      output.dispose();
    }
  }

  private pickOutput(y: tfc.Tensor | tfc.Tensor[] | tfc.NamedTensorMap): tfc.Tensor {
    if (Array.isArray(y)) {
      const i = this.config.output ? this.model.outputNames.indexOf(this.config.output) : 0;
      return y[Math.max(0, i)]!;
    }
    if (y instanceof this.tf.Tensor) return y;
    const map = y as tfc.NamedTensorMap;
    const name = this.config.output ?? Object.keys(map)[0]!;
    return map[name]!;
  }
}
