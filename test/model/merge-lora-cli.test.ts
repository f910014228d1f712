// rpv merge-lora's --help examples, run as written on the folders rpv demo writes (a tiny model and
// two short runs laid out the same way): the merged folder keeps the projector beside it, or says
// that it is text-only.
import { mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MERGE_LORA_EXAMPLES, command } from '../../src/commands/merge-lora.js';
import { parseRecipe, train } from '../../src/index.js';
import { recipeText, writeDataset, writeModel } from '../train/helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-merge-cli-'));
/** A path of the examples (relative to the folder rpv demo ran in) under this test's folder. */
const at = (p: string) => path.join(root, p);

beforeAll(async () => {
  const shards = await writeDataset(at('runs/demo-data/shards'));
  const model = await writeModel(at('runs/demo-data/tiny-model'));
  const quiet = { progressStream: null, log: () => {} };
  await train(parseRecipe(recipeText(at('runs/demo'), shards, model), ['train.max_steps=2', 'eval.every_steps=0'], 'demo.yaml'), quiet);
  await train(
    parseRecipe(recipeText(at('runs/demo-text-only'), shards, model), ['train.max_steps=2', 'eval.every_steps=0', 'data.use_video=false', 'train.projector_warmup_steps=0'], 'demo-text-only.yaml'),
    quiet,
  );
});
afterAll(() => fs.rm(root, { recursive: true, force: true }));

/** Run one example line through the command's handler, its folders under `root`. */
async function runExample(line: string): Promise<string> {
  const words = line.split(' ').slice(2);
  const args: Record<string, unknown> = { json: false };
  for (let i = 0; i < words.length; i += 2) {
    const value = words[i + 1]!;
    args[words[i]!.replace(/^--/, '')] = value.startsWith('runs/') ? at(value) : value;
  }
  let stdout = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((t) => ((stdout += String(t)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await (command.handler as (a: unknown) => Promise<void>)({ _: [], $0: 'rpv', ...args });
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return stdout;
}

describe('rpv merge-lora --help examples', () => {
  it("merge the demo's adapter and keep its projector beside the merged weights", async () => {
    const [line] = MERGE_LORA_EXAMPLES[0]!;
    expect(line).toBe('rpv merge-lora --model runs/demo-data/tiny-model --adapter runs/demo/adapter --out runs/demo-merged');
    const merged = at('runs/demo-merged');
    expect((await runExample(line)).split('\n')).toEqual([
      `wrote ${merged}: 2 linears merged, 14 tensors (F32), config and tokenizer files copied`,
      `the video projector (projector.safetensors, projector_config.json) is copied beside it: a Hugging Face loader sees the text model; rpv's loadProjector(model, '${merged}') attaches it`,
      '',
    ]);
    for (const file of ['projector.safetensors', 'projector_config.json']) {
      expect(readFileSync(path.join(merged, file)).equals(readFileSync(at(`runs/demo/adapter/${file}`)))).toBe(true);
    }
  });

  it('say that a merge without a projector is text-only', async () => {
    const [line] = MERGE_LORA_EXAMPLES[1]!;
    const stdout = await runExample(line);
    expect(stdout.split('\n').slice(1)).toEqual(['the adapter has no video projector: the merged model is text-only', '']);
    await expect(fs.stat(at('runs/demo-text-only-merged/projector.safetensors'))).rejects.toThrow();
  });
});
