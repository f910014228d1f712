/**
 * Scoring a text: each token's log-probability under a model (optionally with an adapter), the
 * total and the perplexity. `rpv score` prints it; the numbers are meant to be compared with
 * another implementation (transformers) on the same folder.
 */
import type { BackendName } from './backend.js';
import { initBackend } from './backend.js';
import { loadModel } from './load.js';
import { adapterContents, loadAdapter } from './adapter.js';
import { RpvError } from '../util/errors.js';

export interface ScoreOptions {
  /** Model folder. */
  model: string;
  /** Adapter folder (its LoRA is applied; a projector is not needed for text). */
  adapter?: string;
  text: string;
  /** Add the tokenizer's special tokens (default true, as transformers' tokenizer(text)). */
  addSpecialTokens?: boolean;
  backend?: BackendName;
}

export interface ScoreResult {
  ids: number[];
  /** Token strings (byte-level symbols as the vocabulary stores them). */
  tokens: string[];
  /** log p(token i | tokens < i); null for the first token, which nothing predicts. */
  logprobs: (number | null)[];
  /** Sum of the log-probabilities. */
  total: number;
  /** exp(-total / (ids - 1)). */
  perplexity: number;
}

export async function scoreText({ model: dir, adapter, text, addSpecialTokens = true, backend = 'auto' }: ScoreOptions): Promise<ScoreResult> {
  await initBackend({ backend });
  const model = await loadModel(dir, { backend });
  try {
    if (adapter) {
      const has = await adapterContents(adapter);
      if (!has.lora) throw new RpvError(`${adapter}: no adapter_config.json (a LoRA adapter folder is expected)`);
      await loadAdapter(model, adapter);
    }
    const tok = model.tokenizer!;
    const ids = tok.encode(text, { addSpecialTokens });
    if (ids.length < 2) throw new RpvError(`score: the text gives ${ids.length} token(s); at least 2 are needed to predict one`);
    const [lp] = await model.tokenLogprobs({ inputIds: ids, batch: 1 });
    const logprobs: (number | null)[] = [null, ...Array.from(lp)];
    const total = lp.reduce((a, b) => a + b, 0);
    return { ids, tokens: tok.idsToTokens(ids), logprobs, total, perplexity: Math.exp(-total / (ids.length - 1)) };
  } finally {
    model.dispose();
  }
}
