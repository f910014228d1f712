/**
 * Generating a role's reply with a trained adapter: the same prompt as training (role, static
 * profile as trained (see generation-profile.ts), video tokens in temporal order, the conversation
 * through the chat template), then greedy or top-p sampling with a KV cache, streamed token by
 * token without cutting a character (text-stream.ts).
 *
 * `generateReply` is the library entry (a judge loop calls it once per sample);
 * `loadForGeneration` restores a base model plus a run's checkpoint (exact trained values and the
 * run's prompt settings), and `videoFeatures` samples and encodes a video file as `rpv convert`
 * did for the dataset.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import type { CausalLM } from '../model/decoder.js';
import type { BackendName } from '../model/backend.js';
import { KvCache } from '../model/decoder.js';
import { RpvError } from '../util/errors.js';
import { assertFiniteWeights } from '../util/finite.js';
import type { SamplingSettings, ShardIndex } from '../shard/schema.js';
import { promptTokenizer } from '../train/bridge.js';
import { renderGenerationPrompt, type ChatMessage } from '../train/prompt.js';
import { Rng, type RngState } from '../util/random.js';
import { TokenTextStream } from './text-stream.js';

export interface VideoFeatures {
  /** [frames, tokensPerFrame, featureDim] flattened. */
  features: Float32Array;
  /** Seconds of each frame. */
  frameTimes: ArrayLike<number>;
  tokensPerFrame: number;
  featureDim: number;
}

export interface GenerateReplyOptions {
  /** A model with its tokenizer (and a projector when `video` is given). */
  model: CausalLM;
  role: string;
  /** Static profile (null: none); `trainedProfile` gives the one the run was trained with. */
  profile?: string | null;
  /** The video (dynamic profile); null for a text-only prompt. */
  video?: VideoFeatures | null;
  /** The conversation so far, ending with the other party's message. */
  history: ChatMessage[];
  /** Stop after this many new tokens. Default 128. */
  maxNewTokens?: number;
  /** 0 = greedy (default); else sampling temperature. */
  temperature?: number;
  /** Nucleus sampling mass (with temperature > 0). Default 0.9. */
  topP?: number;
  /** Seed (or saved state) of the sampling RNG. Default 0. */
  seed?: number | RngState;
  /** `Frame i at t s:` before each frame (as the run was trained). Default true. */
  frameTimeText?: boolean;
  /** Called with each new piece of text as soon as it decodes. */
  onText?: (text: string) => void;
}

export interface GeneratedReply {
  /** The reply: exactly the pieces streamed through `onText`, joined. */
  text: string;
  tokenIds: number[];
  /** Generated ids the tokenizer has no token for (a model whose vocabulary outgrows its tokenizer): not in `text`. */
  undecodableIds: number[];
  promptTokens: number;
  stopReason: 'eos' | 'max-tokens';
}

/** Pick the next token from logits: argmax, or top-p sampling at a temperature. */
export function pickToken(logits: Float32Array, temperature: number, topP: number, rng: Rng): number {
  if (!(temperature > 0)) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const probs = Array.from(logits, (v, i) => ({ i, p: Math.exp((v - max) / temperature) }));
  const total = probs.reduce((a, b) => a + b.p, 0);
  probs.sort((a, b) => b.p - a.p || a.i - b.i);
  const kept: typeof probs = [];
  let mass = 0;
  for (const e of probs) {
    kept.push(e);
    mass += e.p / total;
    if (mass >= topP) break;
  }
  const keptTotal = kept.reduce((a, b) => a + b.p, 0);
  let r = rng.nextFloat() * keptTotal;
  for (const e of kept) {
    r -= e.p;
    if (r <= 0) return e.i;
  }
  return kept[kept.length - 1]!.i;
}

/** Generate the role's next reply, streaming its text through `onText`. */
export async function generateReply(options: GenerateReplyOptions): Promise<GeneratedReply> {
  const { model, role, history, maxNewTokens = 128, temperature = 0, topP = 0.9, frameTimeText = true } = options;
  const tf = model.tf;
  if (!model.tokenizer) throw new RpvError('generate: the model was loaded without its tokenizer');
  if (history.length === 0) throw new RpvError('generate: give at least one message to reply to');
  const video = options.video ?? null;
  if (video && !model.projector) throw new RpvError('generate: a video was given but the adapter has no projector (a text-only run?)');
  if (video && model.videoTokenId === undefined) throw new RpvError('generate: the tokenizer has no video placeholder token');
  const tok = promptTokenizer(model.tokenizer);
  const frames = video ? video.frameTimes : [];
  const prompt = renderGenerationPrompt(
    tok,
    { role, profile: options.profile ?? null, frameTimes: frames, history },
    { frameTimeText, tokensPerFrame: video?.tokensPerFrame ?? 1 },
  );
  const ids = Array.from(prompt.inputIds, (id) => (id < 0 ? model.videoTokenId! : id));
  const stopIds = new Set<number>();
  for (const t of [model.tokenizer.eosToken, '<|im_end|>', '<|endoftext|>', '<|eot_id|>']) {
    const id = t ? model.tokenizer.tokenToId(t) : undefined;
    if (id !== undefined) stopIds.add(id);
  }
  const rng = new Rng(options.seed ?? 0);
  const cache = new KvCache();
  const out: number[] = [];
  const tokenizer = model.tokenizer;
  const stream = new TokenTextStream((ids) => tokenizer.decode(ids, { skipSpecialTokens: true }));
  let stopReason: GeneratedReply['stopReason'] = 'max-tokens';
  try {
    let step: number[] = ids;
    let first = true;
    while (out.length < maxNewTokens) {
      const logitsT = model.logits(
        {
          inputIds: step,
          batch: 1,
          video: first && video ? { features: { data: video.features.subarray(0, prompt.videoPositions.length * video.featureDim), shape: [1, prompt.videoPositions.length, video.featureDim] } } : undefined,
        },
        { cache, lastOnly: true },
      ) as tfc.Tensor2D;
      const logits = (await logitsT.data()) as Float32Array;
      logitsT.dispose();
      first = false;
      // The video placeholder stands for features, not text: generated, it would be fed back
      // without features (and an undertrained model does pick it).
      if (model.videoTokenId !== undefined && model.videoTokenId < logits.length) logits[model.videoTokenId] = -Infinity;
      const next = pickToken(logits, temperature, topP, rng);
      if (stopIds.has(next)) {
        stopReason = 'eos';
        break;
      }
      out.push(next);
      // A partly decoded multi-byte character is held back until it completes.
      const piece = stream.push(next);
      if (piece) options.onText?.(piece);
      step = [next];
    }
  } finally {
    cache.dispose();
  }
  const rest = stream.finish();
  if (rest) options.onText?.(rest);
  void tf;
  const undecodableIds = out.filter((id) => !tokenizer.hasId(id));
  return { text: stream.text, tokenIds: out, undecodableIds, promptTokens: ids.length, stopReason };
}

/** The encoder spec that produced a dataset's features (`grid-v1:cells=4,...` -> `grid:cells=4,...`). */
export function encoderSpecOf(index: ShardIndex): string {
  const enc = index.encoder as { id: string; spec?: unknown; folder?: unknown };
  if (typeof enc.spec === 'string') return enc.spec;
  const m = /^grid-v\d+(?::(.*))?$/.exec(enc.id);
  if (m) return m[1] ? `grid:${m[1]}` : 'grid';
  if (typeof enc.folder === 'string') return `tfjs:${enc.folder}`;
  throw new RpvError(`generate: cannot tell which encoder made this dataset (encoder id ${enc.id}); pass --encoder`);
}

/**
 * Sample and encode a video (or image) file exactly as conversion does: adaptive frame times,
 * one ffmpeg pass, the dataset's encoder (src/features/video.ts encodeVideo).
 */
export async function videoFeatures(file: string, sampling: SamplingSettings, encoderSpec: string, expectedEncoderId?: string): Promise<VideoFeatures> {
  const { encodeVideo } = await import('../features/video.js');
  const { createEncoder } = await import('../features/encoder.js');
  const encoder = await createEncoder(encoderSpec);
  try {
    if (expectedEncoderId !== undefined && encoder.id !== expectedEncoderId) {
      throw new RpvError(`generate: the run was trained on features of encoder ${expectedEncoderId}, but ${encoderSpec} is encoder ${encoder.id}; pass the run's encoder with --encoder`);
    }
    const v = await encodeVideo(file, {
      encoder,
      frameSize: sampling.frameSize,
      sampling: { fps: sampling.fps, minFrames: sampling.minFrames, maxFrames: sampling.maxFrames },
    });
    return { features: v.features, frameTimes: v.frameTimes, tokensPerFrame: encoder.tokensPerFrame, featureDim: encoder.featureDim };
  } finally {
    encoder.dispose?.();
  }
}

export interface LoadedRun {
  model: CausalLM;
  /** The run's resolved recipe (prompt settings, dataset). */
  recipe: import('../train/recipe.js').Recipe;
  checkpoint: string;
  /** Id of the encoder whose features the run was trained on (null: not recorded, an older run). */
  encoderId: string | null;
}

/**
 * A base model with a run's trained LoRA and projector restored from a checkpoint (`run` is a
 * checkpoint folder or a run folder: its latest checkpoint). `modelPath` overrides the recipe's.
 */
export async function loadForGeneration(run: string, { modelPath, backend }: { modelPath?: string; backend?: BackendName } = {}): Promise<LoadedRun> {
  const { resolveCheckpoint, readCheckpoint } = await import('../train/checkpoint.js');
  const { parseRecipe } = await import('../train/recipe.js');
  const { loadTrainModel } = await import('../train/model-io.js');
  const dir = await resolveCheckpoint(run);
  const ckpt = await readCheckpoint(dir);
  const overrides = [modelPath ? `model.path=${modelPath}` : null, backend ? `model.backend=${backend}` : null].filter((x): x is string => x !== null);
  const recipe = parseRecipe(ckpt.recipeYaml, overrides, `${dir}/recipe.yaml`);
  const proj = ckpt.trainable.get('projector.0.weight');
  const model = await loadTrainModel(recipe, proj ? proj.shape[0]! : null);
  const tf = model.tf;
  const { trainableParams } = await import('../train/bridge.js');
  for (const p of trainableParams(model, { video: recipe.data.use_video })) {
    const saved = ckpt.trainable.get(p.name);
    if (!saved || saved.data.length !== p.variable.size) {
      model.dispose();
      throw new RpvError(`generate: checkpoint ${dir}: ${saved ? `${p.name} has ${saved.data.length} values, expected ${p.variable.size}` : `no values for ${p.name}`}`);
    }
    try {
      assertFiniteWeights(`${dir}/trainable.safetensors`, p.name, saved.data);
    } catch (err) {
      model.dispose();
      throw err;
    }
    tf.tidy(() => p.variable.assign(tf.tensor(saved.data, p.variable.shape, 'float32')));
  }
  return { model, recipe, checkpoint: dir, encoderId: typeof ckpt.state.encoder === 'string' ? ckpt.state.encoder : null };
}
