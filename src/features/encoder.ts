/**
 * Frame encoders: RGB24 frames in, one or more feature vectors ("tokens") per frame out.
 *
 * Specs accepted by `createEncoder` (and `rpv convert --encoder`):
 * - `grid` (default), `grid:cells=8`, `grid:cells=4,tokens=cell`: the model-free grid-v1
 *   statistics (src/features/grid.ts, documented in src/features/README.md);
 * - `tfjs:<folder>`: a TensorFlow.js graph or layers model read from a local folder
 *   (src/features/tfjs.ts);
 * - `hf:<folder>[#layer=-2,tokens=patches,pool=2,shuffle=0.5]`: a CLIP, SigLIP or InternViT
 *   vision tower from a Hugging Face folder (src/features/hf.ts, src/vision).
 * Precomputed features (`--features <folder>`) bypass encoders: src/features/precomputed.ts.
 */
import { RpvError } from '../util/errors.js';
import { GridEncoder, parseGridSpec } from './grid.js';

export type { CreateEncoderOptions, EncoderDescription, FrameEncoder } from './frame-encoder.js';
import type { CreateEncoderOptions, FrameEncoder } from './frame-encoder.js';

export const DEFAULT_ENCODER_SPEC = 'grid';

/** Build the encoder a spec names (see the module comment). */
export async function createEncoder(spec: string = DEFAULT_ENCODER_SPEC, options: CreateEncoderOptions = {}): Promise<FrameEncoder> {
  const trimmed = spec.trim();
  if (trimmed === 'grid' || trimmed.startsWith('grid:')) {
    return new GridEncoder(parseGridSpec(trimmed.slice('grid:'.length)));
  }
  if (trimmed.startsWith('tfjs:')) {
    const folder = trimmed.slice('tfjs:'.length);
    if (!folder) throw new RpvError('encoder tfjs: name the model folder, e.g. --encoder tfjs:models/clip-vision');
    const { loadTfjsEncoder } = await import('./tfjs.js');
    return loadTfjsEncoder(folder, options);
  }
  if (trimmed.startsWith('hf:')) {
    const { loadHfEncoder } = await import('./hf.js');
    return loadHfEncoder(trimmed.slice('hf:'.length), options);
  }
  throw new RpvError(`unknown encoder "${spec}": expected "grid", "grid:cells=N[,tokens=frame|cell]", "tfjs:<folder>" or "hf:<folder>[#key=value,...]"`);
}
