/**
 * Loading the model a recipe names (base + fresh LoRA + projector) and exporting what was
 * trained: the adapter in PEFT format and the projector beside it, through the model's own
 * saveAdapter (src/model).
 */
import type { CausalLM } from '../model/decoder.js';
import { loadModel } from '../model/load.js';
import { RpvError } from '../util/errors.js';
import type { Recipe } from './recipe.js';

/** The recipe's base model with LoRA (seeded by the recipe) and, for video runs, a projector. */
export async function loadTrainModel(recipe: Recipe, featureDim: number): Promise<CausalLM> {
  const model = await loadModel(recipe.model.path, { backend: recipe.model.backend });
  if (!model.tokenizer) throw new RpvError(`train: ${recipe.model.path}: no tokenizer loaded`);
  if (recipe.data.use_video && model.videoTokenId === undefined) {
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

type SaveAdapter = (model: CausalLM, dir: string, options?: Record<string, unknown>) => Promise<unknown>;

let warned = false;

/**
 * Write the PEFT adapter (+ projector) of `model` into `dir` with the model's saveAdapter. When
 * src/model has none, writes nothing and says so once (checkpoints still hold every trained value
 * in trainable.safetensors).
 */
export async function exportAdapter(model: CausalLM, recipe: Recipe, dir: string, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<boolean> {
  const spec: string = '../model/adapter.js';
  let save: SaveAdapter | undefined;
  try {
    save = ((await import(spec)) as { saveAdapter?: SaveAdapter }).saveAdapter;
  } catch {
    save = undefined;
  }
  if (!save) {
    if (!warned) log('train: note: src/model/adapter.js has no saveAdapter; the PEFT adapter export is skipped (trainable.safetensors holds the values)');
    warned = true;
    return false;
  }
  await save(model, dir, { baseModelNameOrPath: recipe.model.path });
  return true;
}
