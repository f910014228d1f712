/** loadVisionTower: a Hugging Face vision folder -> VisionTower. */
import { RpvError } from '../util/errors.js';
import type { TowerSettings, VisionTower } from './types.js';

export async function loadVisionTower(folder: string, settings: TowerSettings = {}): Promise<VisionTower> {
  void settings;
  throw new RpvError(`${folder}: vision towers are not implemented yet`);
}
