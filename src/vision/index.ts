/**
 * Pretrained vision towers from Hugging Face folders as frame encoders: CLIP, SigLIP and
 * InternViT, detected from `config.json`, weights used as stored (safetensors, sharded or not,
 * F32/BF16/F16 memory-mapped where the native addon is present), run on the shared layers of
 * src/model (attention core without the causal mask, LayerNorm, GELU, layer scale).
 *
 * The API other modules use (src/features, src/convert, src/commands):
 *   - loadVisionTower(folder, settings, options?) -> VisionTower (options: weights placement,
 *     frames per forward pass, backend)
 *   - parseTowerSettings("layer=-2,tokens=mean") -> TowerSettings (the text after `hf:<folder>#`)
 *   - writeTinyTower(folder, options): a random folder with a published config and tensor names.
 */
export type {
  TowerFamily, TowerSettings, TowerTokens, VisionTower, PreprocessorConfig, TinyTowerPreset, WriteTinyTowerOptions,
} from './types.js';
export { loadVisionTower, towerIdOf } from './load.js';
export type { LoadVisionTowerOptions } from './load.js';
export { readTowerConfig } from './family.js';
export type { TowerConfig } from './family.js';
export { pixelShuffle, averagePool } from './tokens.js';
export { parseTowerSettings, formatTowerSettings } from './settings.js';
export { writeTinyTower } from './tiny.js';
