/**
 * Loading the model a recipe names (base + fresh LoRA + projector) and exporting what was
 * trained: the adapter in PEFT format and the projector beside it, through the model's own
 * saveAdapter (src/model/adapter.ts).
 */
import type { CausalLM } from '../model/decoder.js';
import { loadModel } from '../model/load.js';
import { loadInternVLProjector, saveAdapter } from '../model/adapter.js';
import { RpvError } from '../util/errors.js';
import type { Recipe } from './recipe.js';

/**
 * The recipe's base model with LoRA (seeded by the recipe) and, for video runs, a projector: a
 * fresh one, or an InternVL base's mlp1 with its pretrained weights (projector.type
 * internvl_mlp1). `featureDim` is the shards' feature size (null: not known, as in generate);
 * `encoderId` the shards' encoder, checked against an InternVL base's own tower.
 */
export async function loadTrainModel(recipe: Recipe, featureDim: number | null, { encoderId }: { encoderId?: string } = {}): Promise<CausalLM> {
  const model = await loadModel(recipe.model.path, { backend: recipe.model.backend });
  try {
    await addProjector(model, recipe, featureDim, encoderId);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

async function addProjector(model: CausalLM, recipe: Recipe, featureDim: number | null, encoderId: string | undefined): Promise<void> {
  if (!model.tokenizer) throw new RpvError(`train: ${recipe.model.path}: no tokenizer loaded`);
  if (recipe.data.use_video && model.videoTokenId === undefined) {
    throw new RpvError(`train: ${recipe.model.path}: the tokenizer has no video placeholder token (${model.internvl ? '<IMG_CONTEXT>' : '<|video_pad|> or <video>'}); add one or set data.use_video=false`);
  }
  model.addLora({
    rank: recipe.lora.r,
    alpha: recipe.lora.alpha,
    dropout: recipe.lora.dropout,
    targetModules: recipe.lora.target_modules,
    useRslora: recipe.lora.rslora,
    seed: recipe.seed,
  });
  if (!recipe.data.use_video) return;
  const ivl = model.internvl;
  if (ivl) {
    if (recipe.projector.type !== 'internvl_mlp1') {
      throw new RpvError(`train: projector.type: ${recipe.model.path} is an InternVL folder, whose projector is its pretrained mlp1: set projector.type=internvl_mlp1 (found ${recipe.projector.type})`);
    }
    if (featureDim !== null && featureDim !== ivl.featureDim) {
      throw new RpvError(`train: the shards' features have ${featureDim} values per token, ${recipe.model.path}'s mlp1 takes ${ivl.featureDim}: convert the videos with --encoder hf:${recipe.model.path}`);
    }
    if (encoderId !== undefined) {
      const { towerIdOf } = await import('../vision/load.js');
      const own = await towerIdOf(recipe.model.path);
      if (encoderId !== own) {
        throw new RpvError(`train: ${recipe.data.shards} holds features of encoder ${encoderId}, but ${recipe.model.path}'s mlp1 was trained on its own tower, encoder ${own}: convert the videos with --encoder hf:${recipe.model.path}`);
      }
    }
    await loadInternVLProjector(model);
  } else {
    if (recipe.projector.type === 'internvl_mlp1') throw new RpvError(`train: projector.type: internvl_mlp1 needs an InternVL folder as model.path (${recipe.model.path} is not one)`);
    if (featureDim === null) throw new RpvError('train: the feature size of the video projector is not known');
    model.addProjector({ featureDim, seed: recipe.seed, type: recipe.projector.type });
  }
  model.projectorFrozen = recipe.train.projector === 'freeze';
}

/** Write the PEFT adapter (adapter_model.safetensors, adapter_config.json) and the projector into `dir`. */
export async function exportAdapter(model: CausalLM, recipe: Recipe, dir: string): Promise<void> {
  await saveAdapter(model, dir, { baseModelNameOrPath: recipe.model.path });
}
