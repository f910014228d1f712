/**
 * Golden files: log-probabilities of a text under tiny Llama and Qwen2 folders, computed by an
 * independent float64 numpy forward written from transformers' modeling code
 * (golden/reference_forward.py). rpv's tfjs forward must reproduce them.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, scoreText, writeTinyModel, type TinyModelOptions } from '../../src/index.js';

const goldenDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'golden');
const files = readdirSync(goldenDir).filter((f) => f.endsWith('.json'));

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: null });
});

describe('forward against the numpy reference', () => {
  it('finds the golden files', () => {
    expect(files.length).toBeGreaterThanOrEqual(2);
  });
  for (const file of files) {
    it(file, async () => {
      const golden = JSON.parse(readFileSync(path.join(goldenDir, file), 'utf8')) as { model: TinyModelOptions; text: string; ids: number[]; logprobs: number[] };
      const dir = path.join(mkdtempSync(path.join(tmpdir(), 'rpv-golden-')), 'm');
      await writeTinyModel(dir, golden.model);
      const r = await scoreText({ model: dir, text: golden.text, backend: 'wasm' });
      expect(r.ids).toEqual(golden.ids);
      let maxDiff = 0;
      golden.logprobs.forEach((lp, i) => (maxDiff = Math.max(maxDiff, Math.abs((r.logprobs[i + 1] as number) - lp))));
      // float32 against float64 over 3 layers: measured ~2e-5.
      expect(maxDiff).toBeLessThan(2e-4);
    });
  }
});
