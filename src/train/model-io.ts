/**
 * Loading the model a recipe names (base + fresh LoRA + projector) and exporting what was
 * trained: the adapter in PEFT format and the projector beside it, through the model's own
 * saveAdapter (src/model/adapter.ts).
 */
import type { CausalLM } from '../model/decoder.js';
import { loadModel } from '../model/load.js';
import { saveAdapter } from '../model/adapter.js';
import { RpvError } from '../util/errors.js';
import type { Recipe } from './recipe.js';

/** The recipe's base model with LoRA (seeded by the recipe) and, for video runs, a projector. */
export async function loadTrainModel(recipe: Recipe, featureDim: number): Promise<CausalLM> {
  const model = await loadModel(recipe.model.path, { backend: recipe.model.backend });
  if (!model.tokenizer) throw new RpvError(`train: ${recipe.model.path}: no tokenizer loaded`);
  if (recipe.data.use_video && model.videoTokenId === undefined) {
    model.dispose();
    throw new RpvError(`train: ${recipe.model.path}: the tokenizer has no video placeholder token (<|video_pad|> or <video>); add one or set data.use_video=false`);
  }
  model.addLora({
    rank: recipe.lora.r,
    alpha: recipe.lora.alpha,
    dropout: recipe.lora.dropout,
    targetModules: recipe.lora.target_modules,
    useRslora: recipe.lora.rslora,
    seed: recipe.seed,
  });
  if (recipe.data.use_video) model.addProjector({ featureDim, seed: recipe.seed, type: recipe.projector.type });
  return model;
}

/** Write the PEFT adapter (adapter_model.safetensors, adapter_config.json) and the projector into `dir`. */
export async function exportAdapter(model: CausalLM, recipe: Recipe, dir: string): Promise<void> {
  await saveAdapter(model, dir, { baseModelNameOrPath: recipe.model.path });
}
