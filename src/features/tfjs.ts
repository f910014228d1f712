import { RpvError } from '../util/errors.js';
import type { CreateEncoderOptions, FrameEncoder } from './encoder.js';

export async function loadTfjsEncoder(folder: string, _options: CreateEncoderOptions = {}): Promise<FrameEncoder> {
  throw new RpvError(`encoder tfjs:${folder}: not implemented yet`);
}
