/** writeTinyTower: a random vision folder with a published config and tensor names. */
import { RpvError } from '../util/errors.js';
import type { WriteTinyTowerOptions } from './types.js';

export async function writeTinyTower(folder: string, options: WriteTinyTowerOptions): Promise<void> {
  void options;
  throw new RpvError(`${folder}: writeTinyTower is not implemented yet`);
}
