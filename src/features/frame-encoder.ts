/** The frame encoder interface every encoder implements (grid.ts, tfjs.ts) and createEncoder's options (encoder.ts). */
import type { BackendName } from '../model/backend.js';

/** What an encoder is, for the dataset index (`index.json` `encoder`). */
export interface EncoderDescription {
  /** Versioned id with the parameters that change the numbers, e.g. `grid-v1:cells=4,tokens=frame`. */
  id: string;
  kind: string;
  featureDim: number;
  tokensPerFrame: number;
  [key: string]: unknown;
}

export interface FrameEncoder {
  readonly id: string;
  /** Length of each token's feature vector. */
  readonly featureDim: number;
  /** Tokens per frame. */
  readonly tokensPerFrame: number;
  /**
   * True when the encoder wants frames at their decoded size (`SizedFrame`s from a native
   * extraction, src/media/extract.ts) and resamples them itself (the hf: towers); else frames
   * are scaled to frameSize x frameSize.
   */
  readonly nativeFrames?: boolean;
  /**
   * Encode RGB24 frames of frameSize x frameSize (or, with `nativeFrames`, each of its own
   * size) into a flat Float32Array [frames.length, tokensPerFrame, featureDim].
   */
  encode(frames: Uint8Array[], frameSize: number): Promise<Float32Array>;
  /** Parameters for the index. */
  describe(): EncoderDescription;
  /** Free model memory (tfjs encoders); a no-op for others. */
  dispose?(): void;
}

export interface CreateEncoderOptions {
  /** Frames per model call for model-based encoders. Default 16. */
  batchSize?: number;
  /** tfjs backend for model-based encoders (`tfjs:`): auto, tensorflow, webgpu, wasm or cpu. Default auto. */
  backend?: BackendName;
}
