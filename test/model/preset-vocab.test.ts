// A preset's tokenizer gives every id of the model's (real-sized) vocabulary a token, without
// changing how text encodes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../../src/model/tiny.js';
import { ChatTokenizer } from '../../src/model/tokenizer.js';

const root = mkdtempSync(path.join(tmpdir(), 'rpv-preset-vocab-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('preset tokenizers', () => {
  it('cover the 151,936 ids of qwen2.5-0.5b; text encodes as with the 512-token tokenizer', async () => {
    // The preset's vocabulary and tokenizer, with a small body so the test writes 19 MB, not 1 GB.
    const small = { hiddenSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, intermediateSize: 128 };
    const full = path.join(root, 'full');
    const bare = path.join(root, 'bare');
    await writeTinyModel(full, { preset: 'qwen2.5-0.5b', ...small });
    await writeTinyModel(bare, { preset: 'qwen2.5-0.5b', ...small, fillVocab: false });
    const tok = await ChatTokenizer.load(full);
    const old = await ChatTokenizer.load(bare);
    expect(old.vocabSize).toBe(512);
    expect(tok.vocabSize).toBe(151_936);
    const missing: number[] = [];
    for (let id = 0; id < 151_936; id++) if (!tok.hasId(id)) missing.push(id);
    expect(missing).toEqual([]);
    // Special tokens keep their ids; the first filler follows them.
    expect(tok.tokenToId('<|im_end|>')).toBe(old.tokenToId('<|im_end|>'));
    expect(tok.decode([512])).toMatch(/^[a-zA-Z0-9]{2,4}$/);
    expect(tok.decode([151_935])).toMatch(/^[a-zA-Z0-9]{2,4}$/);
    const text = 'Professor Pixel: It is yellow, unmistakably. 它一直向左跑哦～🐾 abc XYZ 42';
    expect(tok.encode(text)).toEqual(old.encode(text));
  });
});
