import type { CommandModule } from 'yargs';
import { BACKEND_NAMES, type BackendName } from '../model/backend.js';

interface ScoreArgs {
  model: string;
  adapter?: string;
  text: string;
  json: boolean;
  'special-tokens': boolean;
  backend: BackendName;
}

export const command: CommandModule<object, ScoreArgs> = {
  command: 'score',
  describe: 'Print the log-probability of each token of a text under a model (and the total, and perplexity)',
  builder: (yargs) =>
    yargs
      .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model folder' })
      .option('adapter', { type: 'string', describe: 'Adapter folder (PEFT LoRA and/or projector) to apply' })
      .option('text', { type: 'string', demandOption: true, describe: 'Text to score' })
      .option('special-tokens', { type: 'boolean', default: true, describe: "Add the tokenizer's special tokens (BOS) as transformers' tokenizer(text) does" })
      .option('backend', { choices: BACKEND_NAMES, default: 'auto' as const, describe: 'tfjs backend (webgpu: see the README\'s Backends section)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print {ids, tokens, logprobs, total, perplexity} as JSON' })
      .example('rpv score --model models/tiny --text "你好, world" --json', 'Per-token log-probabilities as JSON')
      .example('rpv score --model runs/demo-data/tiny-model --adapter runs/demo/adapter --text "Hi"', 'Under a trained adapter'),
  handler: async (args) => {
    const { scoreText } = await import('../model/score.js');
    const result = await scoreText({
      model: args.model,
      adapter: args.adapter,
      text: args.text,
      addSpecialTokens: args['special-tokens'],
      backend: args.backend,
    });
    if (args.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    const lines = ['   pos      id  logprob  token'];
    result.ids.forEach((id, i) => {
      const lp = result.logprobs[i];
      lines.push(`${String(i).padStart(6)}  ${String(id).padStart(6)}  ${lp === null ? '       -' : lp.toFixed(4).padStart(8)}  ${JSON.stringify(result.tokens[i])}`);
    });
    lines.push(`total ${result.total.toFixed(4)} over ${result.ids.length - 1} predicted tokens, perplexity ${result.perplexity.toFixed(3)}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
