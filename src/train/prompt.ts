/**
 * The training prompt (Video2Roleplay's dynamic + static profile), rendered to token ids and a
 * loss mask:
 *
 * 1. system message: the role's name and its static profile (training: other dialogues of the
 *    same role from training videos, or the record's `profile`; inference: the video's summary),
 *    followed by the video: per frame an optional `Frame i at t s:` text and the frame's video
 *    tokens, in temporal order (the dynamic profile);
 * 2. the dialogue's turns through the model's chat template: the role's turns are the assistant,
 *    every other speaker the user (consecutive turns of one side are joined by a newline).
 *
 * Loss: on the role's turns only (`all` of them, or the `last`), their text and the end-of-turn
 * token that follows, so the model learns to stop. The rendered text is split at the turn
 * boundaries and each piece tokenised on its own (as LLaMA-Factory does), so the prompt of a
 * generation tokenises exactly as in training.
 *
 * Video tokens are never truncated: a sample longer than `maxTokens` is reported as skipped.
 */
import type { Dialogue } from '../shard/schema.js';
import type { ChatMessage } from '../model/tokenizer.js';

/** What the prompt needs from a tokenizer (the model's tokenizer wrapper provides it). */
export interface PromptTokenizer {
  /** Token ids of `text`, special tokens in the text recognised, none added. */
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** The chat template applied to messages, as text. */
  renderChat(messages: ChatMessage[], options: { addGenerationPrompt: boolean }): string;
  /** End-of-turn token text (e.g. `<|im_end|>`), trained after each role turn when present. */
  eosToken: string | null;
  /**
   * How frames are written: `rpv` (`Frame i at t s:` when frameTimeText, then the frame's tokens),
   * or `internvl` (InternVL's video chat: `Frame{i}: <img>`, the tokens, `</img>` and a newline;
   * frameTimeText does not apply). Default rpv.
   */
  frameLayout?: 'rpv' | 'internvl';
}

export type { ChatMessage };

/** Marks where the video goes in the rendered text; never produced by a tokenizer. */
export const VIDEO_SENTINEL = '\u0000rpv-video\u0000';

export interface PromptOptions {
  /** Token budget of the whole sequence (video tokens included). */
  maxTokens: number;
  /** Which role turns carry the loss. */
  lossOn: 'all' | 'last';
  /** `Frame i at t s:` before each frame's tokens. */
  frameTimeText: boolean;
  /** Video tokens per frame (from the dataset's schema). */
  tokensPerFrame: number;
  /** Words whose tokens inside the role's turns are marked in `focusMask` (held-out analysis). */
  focusWords?: string[];
}

export interface PromptInput {
  role: string;
  /** Static profile text (already chosen and capped), or null. */
  profile: string | null;
  /** Seconds of each frame; empty: no video in the prompt. */
  frameTimes: ArrayLike<number>;
  dialogue: Dialogue;
}

/** One rendered sample. Positions index the full sequence (text and video tokens). */
export interface RenderedPrompt {
  /** Token id per position; -1 at video positions. */
  inputIds: Int32Array;
  /** 1 where the token at this position is a training target (predicted from the one before). */
  lossMask: Uint8Array;
  /** 1 where the target token belongs to a focus word in the role's turns. */
  focusMask: Uint8Array;
  /** Sequence position of each video token, frame-major (frame, token-in-frame). */
  videoPositions: Int32Array;
  /** Frames placed in the prompt. */
  numFrames: number;
  /** Targets in `lossMask`. */
  trainedTokens: number;
}

export type SkipReason = 'too-long' | 'no-role-turn';

const sideOf = (speaker: string, role: string): 'assistant' | 'user' => (speaker === role ? 'assistant' : 'user');

/** The system message's text; the video sentinel ends it when the sample has frames. */
export function systemText(role: string, profile: string | null, withVideo: boolean): string {
  let text = `You are ${role}. Stay in character and answer as ${role} would.`;
  if (profile && profile.trim() !== '') text += `\n${role}'s profile:\n${profile.trim()}`;
  if (withVideo) text += `\nThe video you are in:\n${VIDEO_SENTINEL}`;
  return text;
}

/** Dialogue turns as chat messages (role = assistant), consecutive same-side turns joined. */
export function dialogueMessages(dialogue: Dialogue, role: string): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const turn of dialogue.turns) {
    const side = sideOf(turn.speaker, role);
    // Templates often strip whitespace around contents; strip first so the text can be located.
    const content = turn.text.trim();
    const last = out[out.length - 1];
    if (last && last.role === side) last.content += `\n${content}`;
    else out.push({ role: side, content });
  }
  return out;
}

interface Piece {
  text: string;
  trained: boolean;
}

/** Split rendered text at each trained assistant content (and the end-of-turn token after it). */
function splitPieces(rendered: string, messages: ChatMessage[], trainedIdx: Set<number>, eos: string | null): Piece[] | null {
  const pieces: Piece[] = [];
  let cursor = 0;
  let start = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const at = rendered.indexOf(m.content, cursor);
    if (at < 0) return null;
    cursor = at + m.content.length;
    if (m.role !== 'assistant' || !trainedIdx.has(i)) continue;
    if (eos && rendered.startsWith(eos, cursor)) cursor += eos.length;
    pieces.push({ text: rendered.slice(start, at), trained: false });
    pieces.push({ text: rendered.slice(at, cursor), trained: true });
    start = cursor;
  }
  pieces.push({ text: rendered.slice(start), trained: false });
  return pieces.filter((p) => p.text !== '');
}

function focusRanges(text: string, words: string[]): [number, number][] {
  const ranges: [number, number][] = [];
  const lower = text.toLowerCase();
  for (const w of words) {
    const needle = w.toLowerCase();
    if (!needle) continue;
    let from = 0;
    for (;;) {
      const at = lower.indexOf(needle, from);
      if (at < 0) break;
      const before = at === 0 ? '' : lower[at - 1]!;
      const after = lower[at + needle.length] ?? '';
      // Whole words only for Latin text; CJK words have no spaces around them.
      const isWordChar = (c: string) => /[a-z0-9]/.test(c);
      if (!/[a-z0-9]/.test(needle[0]!) || (!isWordChar(before) && !isWordChar(after))) ranges.push([at, at + needle.length]);
      from = at + needle.length;
    }
  }
  return ranges;
}

/** Character end offset of each token of `ids` within decode(ids) (prefix decoding). */
function tokenEnds(tok: PromptTokenizer, ids: number[]): number[] {
  const ends: number[] = [];
  for (let i = 1; i <= ids.length; i++) ends.push(tok.decode(ids.slice(0, i)).length);
  return ends;
}

/**
 * Render one sample. Returns the prompt, or the reason it is skipped: `too-long` (more than
 * `maxTokens`; video tokens are never cut) or `no-role-turn` (nothing to train on).
 */
export function renderTrainingPrompt(tok: PromptTokenizer, input: PromptInput, options: PromptOptions): RenderedPrompt | { skip: SkipReason; tokens?: number } {
  const withVideo = input.frameTimes.length > 0;
  const turns = dialogueMessages(input.dialogue, input.role);
  const assistantIdx = turns.map((m, i) => (m.role === 'assistant' ? i : -1)).filter((i) => i >= 0);
  if (assistantIdx.length === 0) return { skip: 'no-role-turn' };
  const messages: ChatMessage[] = [{ role: 'system', content: systemText(input.role, input.profile, withVideo) }, ...turns];
  const trainedIdx = new Set((options.lossOn === 'last' ? assistantIdx.slice(-1) : assistantIdx).map((i) => i + 1));
  // Everything after the last trained turn is never a target: drop it.
  const lastTrained = Math.max(...trainedIdx);
  const kept = messages.slice(0, lastTrained + 1);
  const rendered = tok.renderChat(kept, { addGenerationPrompt: false });
  const pieces = splitPieces(rendered, kept, trainedIdx, tok.eosToken);
  if (!pieces) throw new Error('prompt: the chat template changed a message\'s text; cannot locate the role\'s turns');
  // Text after the last trained turn (the template's trailing newline) is never a target.
  if (pieces.length > 0 && !pieces[pieces.length - 1]!.trained) pieces.pop();
  return assemble(tok, pieces, input.frameTimes, options);
}

/** Render the prompt of a reply to generate: everything up to the assistant's generation prompt. */
export function renderGenerationPrompt(
  tok: PromptTokenizer,
  input: { role: string; profile: string | null; frameTimes: ArrayLike<number>; history: ChatMessage[] },
  options: Omit<PromptOptions, 'lossOn' | 'maxTokens'> & { maxTokens?: number },
): RenderedPrompt {
  const withVideo = input.frameTimes.length > 0;
  const messages: ChatMessage[] = [{ role: 'system', content: systemText(input.role, input.profile, withVideo) }, ...input.history];
  const rendered = tok.renderChat(messages, { addGenerationPrompt: true });
  const out = assemble(tok, [{ text: rendered, trained: false }], input.frameTimes, { ...options, lossOn: 'all', maxTokens: Number.MAX_SAFE_INTEGER });
  if ('skip' in out) throw new Error('unreachable');
  return out;
}

function assemble(tok: PromptTokenizer, pieces: Piece[], frameTimes: ArrayLike<number>, options: PromptOptions): RenderedPrompt | { skip: SkipReason; tokens: number } {
  const ids: number[] = [];
  const loss: number[] = [];
  const focus: number[] = [];
  const videoPositions: number[] = [];
  const pushText = (text: string, trained: boolean) => {
    if (text === '') return;
    const t = tok.encode(text);
    let focusFlags: boolean[] | null = null;
    if (trained && options.focusWords && options.focusWords.length > 0) {
      const ranges = focusRanges(text, options.focusWords);
      if (ranges.length > 0) {
        const ends = tokenEnds(tok, t);
        focusFlags = t.map((_, k) => {
          const start = k === 0 ? 0 : ends[k - 1]!;
          const end = ends[k]!;
          return ranges.some(([a, b]) => start < b && end > a && end > start);
        });
      }
    }
    t.forEach((id, k) => {
      ids.push(id);
      loss.push(trained ? 1 : 0);
      focus.push(focusFlags?.[k] ? 1 : 0);
    });
  };
  for (const piece of pieces) {
    const parts = piece.text.split(VIDEO_SENTINEL);
    parts.forEach((part, i) => {
      if (i > 0) {
        const internvl = tok.frameLayout === 'internvl';
        for (let f = 0; f < frameTimes.length; f++) {
          if (internvl) pushText(`Frame${f + 1}: <img>`, false);
          else if (options.frameTimeText) pushText(`${f > 0 ? '\n' : ''}Frame ${f + 1} at ${Number(frameTimes[f]).toFixed(1)}s:`, false);
          for (let k = 0; k < options.tokensPerFrame; k++) {
            videoPositions.push(ids.length);
            ids.push(-1);
            loss.push(0);
            focus.push(0);
          }
          if (internvl) pushText('</img>\n', false);
        }
      }
      pushText(part, piece.trained);
    });
  }
  // Position 0 is never a target: nothing precedes it.
  loss[0] = 0;
  focus[0] = 0;
  if (ids.length > options.maxTokens) return { skip: 'too-long', tokens: ids.length };
  const lossMask = Uint8Array.from(loss);
  return {
    inputIds: Int32Array.from(ids),
    lossMask,
    focusMask: Uint8Array.from(focus),
    videoPositions: Int32Array.from(videoPositions),
    numFrames: videoPositions.length > 0 ? frameTimes.length : 0,
    trainedTokens: lossMask.reduce((a, b) => a + b, 0),
  };
}

/** The prompt drawn for a human: `[video x N]` for video tokens, trained spans in `[[...]]`. */
export function showLossMask(tok: PromptTokenizer, prompt: RenderedPrompt): string {
  let out = '';
  let i = 0;
  const n = prompt.inputIds.length;
  while (i < n) {
    if (prompt.inputIds[i] === -1) {
      let j = i;
      while (j < n && prompt.inputIds[j] === -1) j++;
      out += `[video x${j - i}]`;
      i = j;
      continue;
    }
    const trained = prompt.lossMask[i] === 1;
    let j = i;
    while (j < n && prompt.inputIds[j] !== -1 && (prompt.lossMask[j] === 1) === trained) j++;
    const text = tok.decode(Array.from(prompt.inputIds.subarray(i, j)));
    out += trained ? `[[${text}]]` : text;
    i = j;
  }
  return out;
}
