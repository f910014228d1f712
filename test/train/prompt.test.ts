import { describe, expect, it } from 'vitest';
import { renderGenerationPrompt, renderTrainingPrompt, showLossMask, type PromptTokenizer } from '../../src/train/prompt.js';
import { isHeldOut, staticProfile } from '../../src/train/dataset.js';
import { plotRun } from '../../src/train/plot.js';

/** Character-level tokenizer with a ChatML template: every id is a UTF-16 code unit. */
const tok: PromptTokenizer = {
  encode: (text) => Array.from(text, (c) => c.charCodeAt(0)),
  decode: (ids) => String.fromCharCode(...ids),
  renderChat: (messages, { addGenerationPrompt }) =>
    messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + (addGenerationPrompt ? '<|im_start|>assistant\n' : ''),
  eosToken: '<|im_end|>',
};

const dialogue = {
  dialogue_id: 'd1',
  turns: [
    { speaker: 'fan', text: 'Which way?' },
    { speaker: 'Pixel', text: 'Moving left.' },
    { speaker: 'fan', text: 'Sure?' },
    { speaker: 'fan', text: 'Really?' },
    { speaker: 'Pixel', text: ' Yes, red and left! ' },
  ],
};
const options = { maxTokens: 1000, lossOn: 'all' as const, frameTimeText: true, tokensPerFrame: 2, focusWords: ['red', 'left'] };

describe('training prompt', () => {
  it('puts profile and video in the system turn and the loss on every role turn with its end token', () => {
    const p = renderTrainingPrompt(tok, { role: 'Pixel', profile: 'A professor.', frameTimes: [0.5, 2], dialogue }, options);
    if ('skip' in p) throw new Error('skipped');
    expect(showLossMask(tok, p)).toBe(
      '<|im_start|>system\nYou are Pixel. Stay in character and answer as Pixel would.\nPixel\'s profile:\nA professor.\nThe video you are in:\n' +
        'Frame 1 at 0.5s:[video x2]\nFrame 2 at 2.0s:[video x2]<|im_end|>\n' +
        '<|im_start|>user\nWhich way?<|im_end|>\n<|im_start|>assistant\n[[Moving left.<|im_end|>]]\n' +
        '<|im_start|>user\nSure?\nReally?<|im_end|>\n<|im_start|>assistant\n[[Yes, red and left!<|im_end|>]]',
    );
    expect(p.numFrames).toBe(2);
    expect(p.videoPositions).toHaveLength(4);
    expect(p.trainedTokens).toBe('Moving left.<|im_end|>'.length + 'Yes, red and left!<|im_end|>'.length);
    const focused = Array.from(p.inputIds).filter((_, i) => p.focusMask[i]).map((c) => String.fromCharCode(c)).join('');
    expect(focused).toBe('leftredleft');
  });

  it('trains only the last role turn with loss_on last, and drops what follows it', () => {
    const p = renderTrainingPrompt(tok, { role: 'Pixel', profile: null, frameTimes: [], dialogue: { ...dialogue, turns: [...dialogue.turns, { speaker: 'fan', text: 'Bye' }] } }, { ...options, lossOn: 'last' });
    if ('skip' in p) throw new Error('skipped');
    const shown = showLossMask(tok, p);
    expect(shown).toContain('[[Yes, red and left!<|im_end|>]]');
    expect(shown).not.toContain('[[Moving');
    expect(shown).not.toContain('Bye');
    expect(shown).not.toContain('[video');
    expect(shown.startsWith('<|im_start|>system\nYou are Pixel. Stay in character and answer as Pixel would.<|im_end|>')).toBe(true);
  });

  it('skips a sample that does not fit rather than cutting video tokens, and one without a role turn', () => {
    const long = renderTrainingPrompt(tok, { role: 'Pixel', profile: null, frameTimes: [0, 1, 2], dialogue }, { ...options, maxTokens: 100 });
    expect(long).toEqual({ skip: 'too-long', tokens: expect.any(Number) });
    const none = renderTrainingPrompt(tok, { role: 'Nobody', profile: null, frameTimes: [], dialogue }, options);
    expect(none).toEqual({ skip: 'no-role-turn' });
  });

  it('renders the generation prompt exactly as the training prefix', () => {
    const train = renderTrainingPrompt(tok, { role: 'Pixel', profile: 'P.', frameTimes: [1], dialogue: { dialogue_id: 'x', turns: dialogue.turns.slice(0, 2) } }, options);
    if ('skip' in train) throw new Error('skipped');
    const gen = renderGenerationPrompt(tok, { role: 'Pixel', profile: 'P.', frameTimes: [1], history: [{ role: 'user', content: 'Which way?' }] }, options);
    const firstTarget = train.lossMask.indexOf(1);
    expect(Array.from(gen.inputIds)).toEqual(Array.from(train.inputIds.subarray(0, firstTarget)));
  });
});

describe('split and static profile', () => {
  it('holds out a stable fraction of videos by id', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => `video-${i}`);
    const held = ids.filter((id) => isHeldOut(id, 0.1, 0));
    expect(held.length).toBeGreaterThan(150);
    expect(held.length).toBeLessThan(250);
    expect(ids.filter((id) => isHeldOut(id, 0.1, 0))).toEqual(held);
    expect(ids.filter((id) => isHeldOut(id, 0.1, 1))).not.toEqual(held);
    expect(ids.some((id) => isHeldOut(id, 0, 0))).toBe(false);
  });

  it('draws other dialogues of the role, never from the same video, deterministically and capped', () => {
    const pools = new Map([
      ['Pixel', [
        { videoId: 'v1', dialogue: { dialogue_id: 'a', turns: [{ speaker: 'Pixel', text: 'From v1.' }] } },
        { videoId: 'v2', dialogue: { dialogue_id: 'b', turns: [{ speaker: 'Pixel', text: 'From v2.' }] } },
        { videoId: 'v3', dialogue: { dialogue_id: 'c', turns: [{ speaker: 'Pixel', text: 'From v3.' }] } },
      ]],
    ]);
    const sample = { video_id: 'v1', dialogue_id: 'x', role: 'Pixel', profile: 'Own profile.', summary: 'A summary.' };
    const opts = { mode: 'dialogues' as const, dialogues: 2, maxTokens: 1000, seed: 0 };
    const text = staticProfile(tok, sample, pools, opts)!;
    expect(text).not.toContain('v1');
    expect(text.split('\n\n').sort()).toEqual(['Pixel: From v2.', 'Pixel: From v3.']);
    expect(staticProfile(tok, sample, pools, opts)).toBe(text);
    expect(staticProfile(tok, sample, pools, { ...opts, maxTokens: 5 })).toBe('Pixel');
    expect(staticProfile(tok, sample, pools, { ...opts, mode: 'auto' })).toBe('Own profile.');
    expect(staticProfile(tok, sample, pools, { ...opts, mode: 'summary' })).toBe('A summary.');
    expect(staticProfile(tok, sample, pools, { ...opts, mode: 'none' })).toBeNull();
  });
});

describe('plot', () => {
  it('draws train and held-out curves as SVG', () => {
    const svg = plotRun(
      [
        { type: 'train', step: 1, stage: 'lora', loss: 3, lr: 0, grad_norm: 1, tokens: 10, tokens_per_sec: 1, step_sec: 1, loader_wait_sec: 0, skipped: 0, time: '' },
        { type: 'train', step: 2, stage: 'lora', loss: 2, lr: 0, grad_norm: 1, tokens: 10, tokens_per_sec: 1, step_sec: 1, loader_wait_sec: 0, skipped: 0, time: '' },
        { type: 'eval', step: 2, loss: 2.5, perplexity: 12.2, tokens: 5, samples: 1, focus_loss: 1.5, focus_tokens: 2, time: '' },
      ],
      'run <1>',
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('run &lt;1&gt;');
    expect(svg.match(/<path /g)).toHaveLength(4); // train, smoothed, held-out, focus words
    expect(svg).toContain('held-out focus words');
  });
});
