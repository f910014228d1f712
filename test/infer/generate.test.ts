// Generating with a trained run: the static profile it was trained with, and streamed text that
// never cuts a character.
import { execFile } from 'node:child_process';
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertExport, generateReply, loadModel, parseRecipe, train } from '../../src/index.js';
import { TokenTextStream } from '../../src/infer/text-stream.js';
import { staticProfile } from '../../src/train/dataset.js';
import { trainedProfile } from '../../src/infer/generation-profile.js';
import { bytesToUnicode } from '../../src/model/bpe.js';
import { ChatTokenizer } from '../../src/model/tokenizer.js';
import { writeSampleExport } from '../../src/demo/sample-export.js';
import { promptTokenizer } from '../../src/train/bridge.js';
import { scanDataset } from '../../src/train/dataset.js';
import { recipeText, writeDataset, writeModel } from '../train/helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-generate-'));
const model = path.join(root, 'model');
const fixtureShards = path.join(root, 'fixture-shards');
const cli = path.resolve(import.meta.dirname, '../../src/cli.ts');
let tok: ChatTokenizer;

beforeAll(async () => {
  await writeModel(model);
  await writeDataset(fixtureShards);
  tok = await ChatTokenizer.load(model);
});
afterAll(() => fs.rm(root, { recursive: true, force: true }));

/** The token of each byte of `text` (the tiny tokenizer has all 256 byte tokens). */
function byteTokens(text: string): number[] {
  const symbols = bytesToUnicode();
  return Array.from(Buffer.from(text, 'utf8'), (b) => tok.tokenToId(symbols[b]!)!);
}

describe('streamed text', () => {
  it('holds a character split across tokens until it is complete', () => {
    const stream = new TokenTextStream((ids) => tok.decode(ids, { skipSpecialTokens: true }));
    const ids = byteTokens('ok 你好 😺!');
    const pieces = ids.map((id) => stream.push(id));
    // 你 and 好 take 3 tokens each, 😺 takes 4: nothing comes out until the last byte of each.
    expect(pieces).toEqual(['o', 'k', ' ', '', '', '你', '', '', '好', ' ', '', '', '', '😺', '!']);
    expect(stream.finish()).toBe('');
    expect(stream.text).toBe('ok 你好 😺!');
  });

  it('drops a character cut off at the end instead of showing U+FFFD', () => {
    const stream = new TokenTextStream((ids) => tok.decode(ids, { skipSpecialTokens: true }));
    for (const id of byteTokens('hi 😺').slice(0, -2)) stream.push(id);
    expect(stream.finish()).toBe('');
    expect(stream.text).toBe('hi ');
  });

  it('generateReply streams whole characters, and its text is what was streamed, when the token limit cuts an emoji', async () => {
    const lm = await loadModel(model, { backend: 'wasm', log: () => {} });
    try {
      // The model's choices are scripted (one-hot logits): the streaming is what is under test.
      const script = [...byteTokens('好 😺'), ...byteTokens('x')];
      let at = 0;
      const vocab = tok.vocabSize;
      lm.logits = (() => {
        const row = new Float32Array(vocab);
        row[script[at++]!] = 1;
        return tf.tensor2d(row, [1, vocab]);
      }) as typeof lm.logits;
      const pieces: string[] = [];
      // 好 (3 tokens) + space + 2 of the emoji's 4 bytes.
      const reply = await generateReply({ model: lm, role: 'Pixel', history: [{ role: 'user', content: 'Hi' }], maxNewTokens: 6, onText: (t) => pieces.push(t) });
      expect(reply.tokenIds).toEqual(script.slice(0, 6));
      expect(pieces).toEqual(['好', ' ']);
      expect(reply.text).toBe('好 ');
    } finally {
      lm.dispose();
    }
  });
});

describe('the video placeholder', () => {
  it('is never generated: a model that ranks it first gets its next best token', async () => {
    const lm = await loadModel(model, { backend: 'wasm', log: () => {} });
    try {
      const vid = lm.videoTokenId!;
      expect(vid).toBeDefined();
      const next = byteTokens('a')[0]!;
      const vocab = tok.vocabSize;
      lm.logits = (() => {
        const row = new Float32Array(vocab);
        row[vid] = 10; // an undertrained model's favourite
        row[next] = 1;
        return tf.tensor2d(row, [1, vocab]);
      }) as typeof lm.logits;
      // Before, the placeholder came back as input without features: "forward: the input has 1
      // video placeholder tokens ... but no video features were given".
      const reply = await generateReply({ model: lm, role: 'Pixel', history: [{ role: 'user', content: 'Hi' }], maxNewTokens: 3 });
      expect(reply.tokenIds).toEqual([next, next, next]);
    } finally {
      lm.dispose();
    }
  });
});

describe('the static profile of a generated reply', () => {
  const recipeWith = (mode: string) =>
    parseRecipe(recipeText(path.join(root, 'unused'), fixtureShards, model), [`prompt.static_profile=${mode}`, 'prompt.profile_dialogues=2'], 'test.yaml');

  it('defaults to what the recipe trained with, rendered by the training code', async () => {
    const dataset = await scanDataset(fixtureShards, { heldoutFraction: 0.25, seed: 7 });
    const tokenizer = promptTokenizer(tok);
    const at = `${fixtureShards}`;
    const profile = trainedProfile({ recipe: recipeWith('profile'), tokenizer, role: 'Pixel', dataset });
    expect(profile).toEqual({
      profile: 'Pixel loves colours.',
      description: `Pixel's profile from ${at}, as trained (prompt.static_profile profile, at most 24 tokens): "Pixel loves colours."`,
    });
    // auto: the profile when the role has one.
    expect(trainedProfile({ recipe: recipeWith('auto'), tokenizer, role: '小橘', dataset }).profile).toBe('小橘 loves colours.');
    // dialogues: other training dialogues of the role, picked as training picks them for this video.
    const dialogues = trainedProfile({ recipe: recipeWith('dialogues'), tokenizer, role: 'Pixel', dataset, videoId: 'new.mp4' });
    const expected = staticProfile(tokenizer, { video_id: 'new.mp4', dialogue_id: '', role: 'Pixel', profile: null, summary: null }, dataset.roleDialogues, {
      mode: 'dialogues',
      dialogues: 2,
      maxTokens: 24,
      seed: 7,
    });
    expect(expected).toMatch(/^viewer: /);
    expect(dialogues.profile).toBe(expected);
    expect(dialogues.description).toMatch(new RegExp(`^2 other dialogues of Pixel from the training videos of ${at}, as trained \\(prompt\\.static_profile dialogues, at most 24 tokens\\): "viewer: `));
    // summary: only a given summary; none known for a new video.
    expect(trainedProfile({ recipe: recipeWith('summary'), tokenizer, role: 'Pixel', summary: 'A red square.' })).toEqual({
      profile: 'A red square.',
      description: 'the summary given, as trained (prompt.static_profile summary, at most 24 tokens): "A red square."',
    });
    expect(trainedProfile({ recipe: recipeWith('summary'), tokenizer, role: 'Pixel' })).toEqual({
      profile: null,
      description: 'none: the run was trained on video summaries and none is known for this video (give --summary) (prompt.static_profile summary, at most 24 tokens)',
    });
    expect(trainedProfile({ recipe: recipeWith('none'), tokenizer, role: 'Pixel', dataset })).toEqual({ profile: null, description: 'none, as trained (prompt.static_profile none)' });
    expect(trainedProfile({ recipe: recipeWith('profile'), tokenizer, role: 'Nobody', dataset })).toEqual({
      profile: null,
      description: `none: "Nobody" is not a role of ${at} (roles there: Pixel, 小橘) (prompt.static_profile profile, at most 24 tokens)`,
    });
    // A row is its own sample: its profile (none here), as in training.
    const row = { video_id: 'clip-001', profile: null, summary: 'A green square.' };
    expect(trainedProfile({ recipe: recipeWith('profile'), tokenizer, role: 'Pixel', row }).description).toBe(
      'none: row clip-001 has no profile (prompt.static_profile profile, at most 24 tokens)',
    );
    expect(trainedProfile({ recipe: recipeWith('summary'), tokenizer, role: 'Pixel', row }).profile).toBe('A green square.');
  });

  it('rpv generate --video: the role profile from the run, one line naming it; --profile and --no-profile override it', async () => {
    // A real export converted with a real encoder, so that --video clips are encoded as in training.
    const exportDir = path.join(root, 'export');
    await writeSampleExport(exportDir, { clips: 4, dialoguesPerClip: 3, seed: 3 });
    const shards = path.join(root, 'shards');
    await convertExport({ input: exportDir, out: shards, encoder: 'grid:cells=1', workers: 1 });
    const runDir = path.join(root, 'video-run');
    await train(parseRecipe(recipeText(runDir, shards, model), ['train.max_steps=2', 'data.heldout_fraction=0', 'prompt.static_profile=profile', 'prompt.max_tokens=512'], 'test.yaml'), {
      progressStream: null,
      log: () => {},
    });
    const records = (await fs.readFile(path.join(exportDir, 'annotations.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    const record = records[0];
    const clip = path.join(exportDir, record.video);
    const generate = async (extra: string[]) => {
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', cli, 'generate', runDir, '--video', clip, '--role', record.role, '-m', 'What colour is it?', '--max-tokens', '3', '--json', ...extra],
      );
      return { reply: JSON.parse(stdout), stderr };
    };
    const capped = staticProfile(promptTokenizer(tok), { ...record, video_id: record.id, dialogue_id: '' }, new Map(), { mode: 'profile', dialogues: 0, maxTokens: 24, seed: 7 });
    const preview = Array.from(capped!.split('\n')[0]!);
    const quoted = JSON.stringify(preview.length > 60 ? `${preview.slice(0, 59).join('')}…` : preview.join(''));
    const trained = await generate([]);
    // (stderr may also hold the backend line on a machine without the native kernel)
    expect(trained.stderr.split('\n')).toContain(`profile: ${record.role}'s profile from ${shards}, as trained (prompt.static_profile profile, at most 24 tokens): ${quoted}`);
    expect(trained.reply.profile).toBe(capped);
    const none = await generate(['--no-profile']);
    expect(none.stderr.split('\n')).toContain('profile: none (--no-profile)');
    expect(none.reply.profile).toBeNull();
    expect(none.reply.promptTokens).toBeLessThan(trained.reply.promptTokens);
    const given = await generate(['--profile', 'A cheerful guide.']);
    expect(given.stderr.split('\n')).toContain('profile: the text given with --profile');
    expect(given.reply.profile).toBe('A cheerful guide.');
  });
});
