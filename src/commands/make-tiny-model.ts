import type { CommandModule } from 'yargs';

interface MakeTinyModelArgs {
  dir: string;
  arch: 'llama' | 'qwen2';
  seed: number;
  hidden: number;
  layers: number;
  heads: number;
  'kv-heads': number;
  intermediate?: number;
  vocab: number;
  dtype: 'F32' | 'F16' | 'BF16';
  'init-std': number;
  json: boolean;
}

export const command: CommandModule<object, MakeTinyModelArgs> = {
  command: 'make-tiny-model <dir>',
  describe: 'Write a random-initialised tiny Hugging Face model folder (config, safetensors, byte-level BPE tokenizer, chat template)',
  builder: (yargs) =>
    yargs
      .positional('dir', { type: 'string', demandOption: true, describe: 'Folder to write (created if missing)' })
      .option('arch', { choices: ['llama', 'qwen2'] as const, default: 'qwen2' as const, describe: 'Architecture (model_type in config.json)' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the random weights: same seed, same model' })
      .option('hidden', { type: 'number', default: 64, describe: 'hidden_size' })
      .option('layers', { type: 'number', default: 2, describe: 'num_hidden_layers' })
      .option('heads', { type: 'number', default: 4, describe: 'num_attention_heads' })
      .option('kv-heads', { type: 'number', default: 2, describe: 'num_key_value_heads (grouped-query attention)' })
      .option('intermediate', { type: 'number', describe: 'intermediate_size (default 2.5 x hidden)' })
      .option('vocab', { type: 'number', default: 512, describe: 'vocab_size: 256 bytes + BPE merges + 6 special tokens' })
      .option('dtype', { choices: ['F32', 'F16', 'BF16'] as const, default: 'F32' as const, describe: 'dtype of model.safetensors' })
      .option('init-std', { type: 'number', default: 0.02, describe: 'Standard deviation of the random weights (initializer_range); larger gives peakier predictions' })
      .option('json', { type: 'boolean', default: false, describe: 'Print config.json' })
      .example('rpv make-tiny-model models/tiny', 'A 2-layer Qwen2-style model with hidden size 64')
      .example('rpv make-tiny-model /tmp/llama --arch llama --hidden 128 --layers 4 --dtype BF16', 'A Llama-style model with llama3 rope scaling, BF16 weights'),
  handler: async (args) => {
    const { writeTinyModel } = await import('../model/tiny.js');
    const config = await writeTinyModel(args.dir, {
      arch: args.arch,
      seed: args.seed,
      hiddenSize: args.hidden,
      numLayers: args.layers,
      numHeads: args.heads,
      numKvHeads: args['kv-heads'],
      intermediateSize: args.intermediate,
      vocabSize: args.vocab,
      dtype: args.dtype,
      initStd: args['init-std'],
    });
    if (args.json) {
      process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `wrote ${args.dir}: ${config.model_type}, ${config.num_hidden_layers} layers, hidden ${config.hidden_size}, ` +
        `${config.num_attention_heads} heads / ${config.num_key_value_heads} kv heads, vocab ${config.vocab_size}, ${args.dtype}\n` +
        `  files: config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json\n` +
        `  next: rpv score --model ${args.dir} --text "Hello"\n`,
    );
  },
};
