/**
 * One sample as training sees it: its static profile chosen by the recipe, its prompt rendered
 * with the loss mask, its frames. Training, held-out evaluation and generation all use this.
 */
import type { Sample } from '../loader/collate.js';
import { staticProfile, type DatasetSummary } from './dataset.js';
import type { PreparedSample } from './pack.js';
import { renderTrainingPrompt, type PromptTokenizer, type RenderedPrompt } from './prompt.js';
import type { Recipe } from './recipe.js';

/** The training prompt of one sample, its static profile drawn as the recipe says. */
export function renderSample(recipe: Recipe, tok: PromptTokenizer, dataset: DatasetSummary, s: Sample, tokensPerFrame: number, profileMode?: Recipe['prompt']['static_profile']) {
  const profile = staticProfile(tok, s, dataset.roleDialogues, {
    mode: profileMode ?? recipe.prompt.static_profile,
    dialogues: recipe.prompt.profile_dialogues,
    maxTokens: recipe.prompt.profile_max_tokens,
    seed: recipe.seed,
  });
  return renderTrainingPrompt(
    tok,
    { role: s.role, profile, frameTimes: recipe.data.use_video ? s.frameTimes.subarray(0, s.numFrames) : [], dialogue: { dialogue_id: s.dialogue_id, turns: s.turns } },
    {
      maxTokens: recipe.prompt.max_tokens,
      lossOn: recipe.prompt.loss_on,
      frameTimeText: recipe.prompt.frame_time_text,
      tokensPerFrame,
      focusWords: recipe.eval.focus_words,
    },
  );
}

/** A rendered sample with its frames, ready to pack. */
export function prepared(s: Sample, prompt: RenderedPrompt, video: boolean, frameValues: number): PreparedSample {
  return { sampleId: s.sampleId, prompt, frames: video ? s.frames.slice(0, s.numFrames * frameValues) : new Float32Array(0) };
}
