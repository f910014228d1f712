/** `layer=-2,tokens=mean,pool=2,shuffle=0.5`: the settings text of `hf:<folder>#...`. */
import { RpvError } from '../util/errors.js';
import type { TowerSettings } from './types.js';

const KEYS = ['layer', 'tokens', 'pool', 'shuffle'] as const;

/** Parses `key=value,...` (empty: {}); unknown keys and bad values are errors naming them. */
export function parseTowerSettings(text: string): TowerSettings {
  const out: TowerSettings = {};
  if (text.trim() === '') return out;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const key = (eq < 0 ? part : part.slice(0, eq)).trim();
    const value = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new RpvError(`hf encoder settings: unknown key "${key}" (expected ${KEYS.join(', ')})`);
    }
    if (key === 'tokens') {
      if (value !== 'patches' && value !== 'cls' && value !== 'mean') {
        throw new RpvError(`hf encoder settings: tokens must be patches, cls or mean, found "${value}"`);
      }
      out.tokens = value;
      continue;
    }
    const n = Number(value);
    if (value === '' || !Number.isFinite(n)) throw new RpvError(`hf encoder settings: ${key} must be a number, found "${value}"`);
    if (key === 'layer') {
      if (!Number.isInteger(n)) throw new RpvError(`hf encoder settings: layer must be an integer, found "${value}"`);
      out.layer = n;
    } else if (key === 'pool') {
      if (!Number.isInteger(n) || n < 1) throw new RpvError(`hf encoder settings: pool must be an integer >= 1, found "${value}"`);
      out.pool = n;
    } else {
      if (!(n > 0 && n <= 1) || !Number.isInteger(1 / n)) throw new RpvError(`hf encoder settings: shuffle must be 1/k for an integer k (e.g. 0.5), found "${value}"`);
      out.shuffle = n;
    }
  }
  return out;
}

/** The canonical text of resolved settings, as recorded in encoder ids. */
export function formatTowerSettings(s: Required<TowerSettings>): string {
  return `layer=${s.layer},tokens=${s.tokens},pool=${s.pool},shuffle=${s.shuffle}`;
}
