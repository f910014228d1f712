/** Types of the vision towers' public API (src/vision/index.ts). */

/** The architecture families rpv reads; detected from config.json (architectures / model_type). */
export type TowerFamily = 'clip' | 'siglip' | 'internvit';

/** Which tokens of the selected hidden state make a frame's features. */
export type TowerTokens = 'patches' | 'cls' | 'mean';

/**
 * Settings after `#` in `hf:<folder>#key=value,...`. Every field is optional in the text; the
 * loaded tower reports the resolved values (defaults filled in) in `VisionTower.settings`.
 */
export interface TowerSettings {
  /**
   * Hidden state to read, counted as transformers' `hidden_states`: 0 is the input of the first
   * block (embeddings, after CLIP's pre-LayerNorm), i the output of block i; negative counts from
   * the end (-1 the last block's output, -2 the one before). Default -2 for CLIP (LLaVA's
   * `mm_vision_select_layer`), -1 otherwise. Post-LayerNorm: see `postNorm`.
   */
  layer?: number;
  /**
   * `patches` (every patch token, class token dropped), `cls` (the class token: CLIP and
   * InternViT only), `mean` (mean of the patch tokens). Default `patches`.
   */
  tokens?: TowerTokens;
  /**
   * N x N average pooling of the patch grid (LLaVA-OneVision's 2x2); 1 = none. Only with
   * tokens=patches. Any grid: g x g becomes ceil(g/N) x ceil(g/N), the last windows partial (avg_pool2d, ceil_mode).
   */
  pool?: number;
  /**
   * InternVL's pixel shuffle (`ps_version` v2) with this scale factor: a [h, w, C] grid becomes
   * [h*s, w*s, C/s^2]. 1 = none. Default 0.5 for InternViT, 1 otherwise. Only with tokens=patches.
   */
  shuffle?: number;
}

/** preprocessor_config.json as stored (CLIPImageProcessor / SiglipImageProcessor fields); unknown keys kept. */
export interface PreprocessorConfig {
  image_processor_type?: string;
  do_resize?: boolean;
  size?: number | { shortest_edge?: number; height?: number; width?: number };
  resample?: number;
  do_center_crop?: boolean;
  crop_size?: number | { height: number; width: number };
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  image_mean?: number[];
  image_std?: number[];
  do_convert_rgb?: boolean;
  [key: string]: unknown;
}

export interface VisionTower {
  readonly family: TowerFamily;
  /** Settings with defaults resolved. */
  readonly settings: Required<TowerSettings>;
  /**
   * `hf:<family>/<model_type>#layer=..,tokens=..,pool=..,shuffle=..@<hash>`: the family, the
   * resolved settings and a hash (sha256, 16 hex) of config.json and the weight files' headers
   * and sizes; equal ids mean equal features.
   */
  readonly id: string;
  /** Input side in pixels (config `image_size`): frames are [3, imageSize, imageSize]. */
  readonly imageSize: number;
  readonly patchSize: number;
  /** Features per frame after the settings (e.g. 196 for CLIP B/16 patches, 256 for InternViT with shuffle 0.5). */
  readonly tokensPerFrame: number;
  /** Values per token (hidden size, times 1/shuffle^2). */
  readonly width: number;
  /** preprocessor_config.json, parsed; {} when the folder has none. */
  readonly preprocessor: PreprocessorConfig;
  /**
   * pixels [frames, 3, imageSize, imageSize] float32, already preprocessed (rescaled,
   * normalised) -> [frames, tokensPerFrame, width] float32.
   */
  encode(pixels: Float32Array, frames: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export type TinyTowerPreset = 'tiny' | 'clip-vit-b16' | 'siglip-so400m' | 'internvit-300m';

export interface WriteTinyTowerOptions {
  family: TowerFamily;
  /** `tiny`: a few-hundred-kB model of the family (image 32, patch 8); others: the published config. */
  preset?: TinyTowerPreset;
  /** Stored dtype of the weights. Default F32. */
  dtype?: 'F32' | 'BF16' | 'F16';
  /** Seed of the random weights. Default 0. */
  seed?: number;
  /** Merged into config.json before the tensors are laid out (e.g. `{ norm_type: 'rms_norm', qk_normalization: true }`). */
  overrides?: Record<string, unknown>;
}
