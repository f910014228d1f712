/**
 * `hf:<folder>[#key=value,...]`: a pretrained vision tower from a Hugging Face folder (CLIP,
 * SigLIP, InternViT; src/vision) as a frame encoder. Frames come at their decoded size
 * (`nativeFrames`): each is resized, cropped and normalised as the folder's processor does
 * (src/vision/preprocess.ts) and the tower encodes them in batches of `batchSize`.
 *
 * Settings after `#` (src/vision/settings.ts): `layer=-1|-2|N`, `tokens=patches|cls|mean`,
 * `pool=N`, `shuffle=0.5`. The encoder id is the tower's (family, resolved settings, hash of
 * config.json and the weight files), so shards of two towers or two settings never mix.
 */
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { frameDims } from '../media/extract.js';
import type { CreateEncoderOptions, EncoderDescription, FrameEncoder } from './frame-encoder.js';
import type { VisionTower } from '../vision/index.js';
import { describePreprocess, preprocessFrame, resolvePreprocess, type PreprocessPlan } from '../vision/preprocess.js';

/** Split `<folder>#<settings>` (the text after `hf:`); the settings part may be absent. */
export function splitHfSpec(text: string): { folder: string; settings: string } {
  const hash = text.lastIndexOf('#');
  const folder = hash < 0 ? text : text.slice(0, hash);
  if (folder.trim() === '') throw new RpvError('encoder hf: name the model folder, e.g. --encoder hf:models/clip-vit-base-patch16#layer=-2');
  return { folder, settings: hash < 0 ? '' : text.slice(hash + 1) };
}

/** Load the tower `hf:<text>` names (see the module comment). */
export async function loadHfEncoder(text: string, options: CreateEncoderOptions = {}): Promise<HfEncoder> {
  const { folder, settings } = splitHfSpec(text);
  const { loadVisionTower, parseTowerSettings } = await import('../vision/index.js');
  const batchSize = options.batchSize ?? 8;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RpvError(`encoder hf:${folder}: batchSize must be a positive integer, got ${batchSize}`);
  const tower = await loadVisionTower(folder, parseTowerSettings(settings));
  let plan: PreprocessPlan;
  try {
    plan = resolvePreprocess(tower.family, tower.preprocessor, tower.imageSize);
  } catch (err) {
    await tower.dispose();
    throw new RpvError(`encoder hf:${folder}: ${(err as Error).message}`, { cause: err });
  }
  return new HfEncoder(folder, tower, plan, batchSize);
}

export class HfEncoder implements FrameEncoder {
  /** Frames reach `encode` at their decoded size: the processor resamples them. */
  readonly nativeFrames = true;
  constructor(
    readonly folder: string,
    readonly tower: VisionTower,
    readonly plan: PreprocessPlan,
    readonly batchSize: number,
  ) {}

  get id(): string {
    return this.tower.id;
  }

  get featureDim(): number {
    return this.tower.width;
  }

  get tokensPerFrame(): number {
    return this.tower.tokensPerFrame;
  }

  /** The `--encoder` spec that recreates this encoder: the absolute folder and the resolved settings. */
  get spec(): string {
    const s = this.tower.settings;
    return `hf:${path.resolve(this.folder)}#layer=${s.layer},tokens=${s.tokens},pool=${s.pool},shuffle=${s.shuffle}`;
  }

  /** Preprocessed pixels of `frames` (each its own size, else `frameSize` squared): [n, 3, S, S]. */
  pixels(frames: readonly Uint8Array[], frameSize: number): Float32Array {
    const size = this.tower.imageSize;
    const out = new Float32Array(frames.length * 3 * size * size);
    frames.forEach((frame, i) => {
      const { width, height } = frameDims(frame, frameSize);
      preprocessFrame(frame, width, height, this.plan, size, out, i * 3 * size * size);
    });
    return out;
  }

  /** The last encode queued: the convert lanes' calls run one after another, never interleaved. */
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * One video's frames at a time: the tower's kernels already take every core (a measurement in
   * src/features/README.md), so concurrent calls would only hold two batches of activations.
   */
  encode(frames: Uint8Array[], frameSize: number): Promise<Float32Array> {
    const run = this.queue.then(() => this.encodeNow(frames, frameSize));
    this.queue = run.catch(() => {});
    return run;
  }

  private async encodeNow(frames: Uint8Array[], frameSize: number): Promise<Float32Array> {
    const per = this.tokensPerFrame * this.featureDim;
    const out = new Float32Array(frames.length * per);
    for (let i = 0; i < frames.length; i += this.batchSize) {
      const batch = frames.slice(i, i + this.batchSize);
      const features = await this.tower.encode(this.pixels(batch, frameSize), batch.length);
      if (features.length !== batch.length * per) {
        throw new RpvError(`encoder ${this.id}: the tower returned ${features.length} values for ${batch.length} frames of ${this.tokensPerFrame} x ${this.featureDim}`);
      }
      out.set(features, i * per);
    }
    return out;
  }

  describe(): EncoderDescription {
    const t = this.tower;
    return {
      id: t.id,
      spec: this.spec,
      kind: 'hf',
      family: t.family,
      folder: path.resolve(this.folder),
      settings: { ...t.settings },
      featureDim: t.width,
      tokensPerFrame: t.tokensPerFrame,
      imageSize: t.imageSize,
      patchSize: t.patchSize,
      preprocess: describePreprocess(this.plan),
      batchSize: this.batchSize,
    };
  }

  dispose(): void {
    void this.tower.dispose();
  }
}
