/**
 * writeTinyTower: a vision folder with a published family's config.json, preprocessor_config.json
 * and model.safetensors holding random weights under the real tensor names and shapes (read back
 * by loadVisionTower like a downloaded folder). Presets: `tiny` (image 32, patch 8, width 32, 3
 * blocks: for tests), and the published configs of CLIP ViT-B/16, SigLIP so400m-patch14-384 and
 * InternViT-300M-448px. Weights are written tensor by tensor (a full-size preset never sits in
 * memory whole).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { hashString, Mulberry32 } from '../util/random.js';
import { writeSafetensorsStreaming, type SafetensorsStreamTensor } from '../util/safetensors.js';
import { expectedTowerTensors, readTowerConfig, towerNames } from './family.js';
import type { PreprocessorConfig, TinyTowerPreset, TowerFamily, WriteTinyTowerOptions } from './types.js';

const TINY = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 4, image_size: 32, patch_size: 8 };

const PRESET_FAMILY: Record<Exclude<TinyTowerPreset, 'tiny'>, TowerFamily> = {
  'clip-vit-b16': 'clip',
  'siglip-so400m': 'siglip',
  'internvit-300m': 'internvit',
};

export function configFor(family: TowerFamily, preset: TinyTowerPreset, dtype: string): Record<string, unknown> {
  const torchDtype = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[dtype];
  if (family === 'clip') {
    const size = preset === 'tiny' ? TINY : { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 16 };
    return {
      architectures: ['CLIPVisionModel'], model_type: 'clip_vision_model', ...size, projection_dim: 512, num_channels: 3,
      hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, attention_dropout: 0, initializer_factor: 1, initializer_range: 0.02, torch_dtype: torchDtype,
    };
  }
  if (family === 'siglip') {
    const size = preset === 'tiny' ? TINY : { hidden_size: 1152, intermediate_size: 4304, num_hidden_layers: 27, num_attention_heads: 16, image_size: 384, patch_size: 14 };
    return {
      architectures: ['SiglipVisionModel'], model_type: 'siglip_vision_model', ...size, num_channels: 3,
      hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6, attention_dropout: 0, torch_dtype: torchDtype,
    };
  }
  const size = preset === 'tiny' ? TINY : { hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 448, patch_size: 14 };
  return {
    architectures: ['InternVisionModel'], model_type: 'intern_vit_6b', ...size, num_channels: 3, hidden_act: 'gelu', norm_type: 'layer_norm',
    layer_norm_eps: 1e-6, qkv_bias: true, qk_normalization: false, initializer_factor: 0.1, initializer_range: 1e-10, drop_path_rate: 0,
    dropout: 0, attention_dropout: 0, use_flash_attn: false, torch_dtype: torchDtype,
  };
}

export function preprocessorFor(family: TowerFamily, imageSize: number): PreprocessorConfig {
  if (family === 'clip') {
    return {
      image_processor_type: 'CLIPImageProcessor', do_resize: true, size: { shortest_edge: imageSize }, resample: 3, do_center_crop: true,
      crop_size: { height: imageSize, width: imageSize }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true,
      image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], do_convert_rgb: true,
    };
  }
  if (family === 'siglip') {
    return {
      image_processor_type: 'SiglipImageProcessor', processor_class: 'SiglipProcessor', do_resize: true, size: { height: imageSize, width: imageSize },
      resample: 3, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
    };
  }
  return {
    feature_extractor_type: 'CLIPFeatureExtractor', do_resize: true, size: imageSize, resample: 3, do_center_crop: true, crop_size: imageSize,
    do_normalize: true, image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225],
  };
}

/** How a tensor is drawn: matrices N(0, 1/fan_in), norm weights 1 + N(0, 0.1), layer scales 0.5 + N(0, 0.1), the rest N(0, 0.1) or N(0, 0.5) (embeddings). */
export function initOf(name: string, shape: number[]): { mean: number; std: number } {
  const last = name.split('.').pop()!;
  const isNorm = /norm|layrnorm/.test(name);
  if (/(^|\.)ls[12]$/.test(name)) return { mean: 0.5, std: 0.1 };
  if (name.endsWith('class_embedding') || name.includes('position_embedding') || name.endsWith('probe')) return { mean: 0, std: 0.5 };
  if (isNorm && last === 'weight') return { mean: 1, std: 0.1 };
  if (shape.length >= 2) return { mean: 0, std: 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)) };
  return { mean: 0, std: 0.1 };
}

/** Writes the folder (created if missing). */
export async function writeTinyTower(folder: string, options: WriteTinyTowerOptions): Promise<void> {
  const { family, preset = 'tiny', dtype = 'F32', seed = 0, overrides = {} } = options;
  if (!['clip', 'siglip', 'internvit'].includes(family)) throw new RpvError(`writeTinyTower: unknown family ${JSON.stringify(family)} (expected clip, siglip or internvit)`);
  if (preset !== 'tiny' && PRESET_FAMILY[preset] !== family) {
    throw new RpvError(`writeTinyTower: preset ${preset} is a ${PRESET_FAMILY[preset] ?? 'unknown'} tower, not ${family}`);
  }
  if (!['F32', 'BF16', 'F16'].includes(dtype)) throw new RpvError(`writeTinyTower: dtype must be F32, BF16 or F16, found ${JSON.stringify(dtype)}`);
  await fs.mkdir(folder, { recursive: true });
  const config = { ...configFor(family, preset, dtype), ...overrides };
  await writeFileAtomic(path.join(folder, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeFileAtomic(path.join(folder, 'preprocessor_config.json'), `${JSON.stringify(preprocessorFor(family, Number(config.image_size)), null, 2)}\n`);
  const parsed = await readTowerConfig(folder);
  const shapes = expectedTowerTensors(parsed);
  if (family === 'siglip') {
    // The attention-pooling head, as published (loadVisionTower does not read it).
    const D = parsed.hiddenSize;
    const h = `${parsed.prefix}head`;
    shapes.set(`${h}.probe`, [1, 1, D]);
    shapes.set(`${h}.attention.in_proj_weight`, [3 * D, D]);
    shapes.set(`${h}.attention.in_proj_bias`, [3 * D]);
    shapes.set(`${h}.attention.out_proj.weight`, [D, D]);
    shapes.set(`${h}.attention.out_proj.bias`, [D]);
    shapes.set(`${h}.layernorm.weight`, [D]);
    shapes.set(`${h}.layernorm.bias`, [D]);
    shapes.set(`${h}.mlp.fc1.weight`, [parsed.intermediateSize, D]);
    shapes.set(`${h}.mlp.fc1.bias`, [parsed.intermediateSize]);
    shapes.set(`${h}.mlp.fc2.weight`, [D, parsed.intermediateSize]);
    shapes.set(`${h}.mlp.fc2.bias`, [D]);
  }
  if (family === 'clip') {
    const p = towerNames(parsed).preNorm!.replace('pre_layrnorm', 'post_layernorm');
    shapes.set(`${p}.weight`, [parsed.hiddenSize]);
    shapes.set(`${p}.bias`, [parsed.hiddenSize]);
  }
  if (family === 'siglip') {
    shapes.set(`${parsed.prefix}post_layernorm.weight`, [parsed.hiddenSize]);
    shapes.set(`${parsed.prefix}post_layernorm.bias`, [parsed.hiddenSize]);
  }
  const tensors: SafetensorsStreamTensor[] = [...shapes].map(([name, shape]) => {
    const rng = new Mulberry32(hashString(name, seed));
    const { mean, std } = initOf(name, shape);
    return {
      name,
      shape,
      dtype,
      fill: (out: Float32Array) => {
        const v = rng.normal(out.length, std);
        for (let i = 0; i < out.length; i++) out[i] = mean + v[i];
      },
    };
  });
  await writeSafetensorsStreaming(path.join(folder, 'model.safetensors'), tensors, { metadata: { format: 'pt' } });
}
