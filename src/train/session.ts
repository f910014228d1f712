/**
 * What `openSession` (trainer.ts) sets up for a run: backend, model, tokenizer, dataset summary,
 * schedule, trainable parameters, memory plan and the sample renderer. Shared by the training
 * loop's parts (micro-batches.ts, run-state.ts, evaluator.ts) and `--dry-run`.
 */
import type { Sample } from '../loader/collate.js';
import type { BackendInfo } from '../model/backend.js';
import type { CausalLM } from '../model/decoder.js';
import type { Param } from './adamw.js';
import type { DatasetSummary } from './dataset.js';
import type { MemoryPlan } from './memory.js';
import type { PreparedSample } from './pack.js';
import type { PromptTokenizer, RenderedPrompt, SkipReason } from './prompt.js';
import type { Recipe } from './recipe.js';

/** Everything set up for a run; shared by `train` and `--dry-run`. */
export interface TrainingSession {
  recipe: Recipe;
  backend: BackendInfo;
  model: CausalLM;
  tokenizer: PromptTokenizer;
  dataset: DatasetSummary;
  featureDim: number;
  tokensPerFrame: number;
  /** Optimizer steps of the whole run. */
  totalSteps: number;
  warmupSteps: number;
  /** Loader batches per epoch (each a micro-batch once held-out samples are removed). */
  batchesPerEpoch: number;
  params: Param[];
  /** Where memory goes at the longest sample, and whether layers are recomputed (src/train/memory.ts). */
  memory: MemoryPlan;
  /** `tokens`: the length of a sample skipped as too long. */
  prepare: (s: Sample) => { sample?: PreparedSample; skip?: SkipReason | 'held-out'; tokens?: number; prompt?: RenderedPrompt };
  dispose: () => void;
}
