import type { CommandModule } from 'yargs';

interface MakeTinyModelArgs {
  dir: string;
  preset?: 'qwen2.5-0.5b' | 'qwen2.5-1.5b' | 'qwen2.5-7b';
  arch?: 'llama' | 'qwen2';
  seed: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  'kv-heads'?: number;
  intermediate?: number;
  vocab?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  'init-std': number;
  json: boolean;
}

export const command: CommandModule<object, MakeTinyModelArgs> = {
  command: 'make-tiny-model <dir>',
  describe: 'Write a random-initialised tiny Hugging Face model folder (config, safetensors, byte-level BPE tokenizer, chat template)',
  builder: (yargs) =>
    yargs
      .positional('dir', { type: 'string', demandOption: true, describe: 'Folder to write (created if missing)' })
      .option('preset', {
        choices: ['qwen2.5-0.5b', 'qwen2.5-1.5b', 'qwen2.5-7b'] as const,
        describe: 'A real model\'s shapes and vocabulary with random BF16 weights (0.5B: 1 GB, 1.5B: 3.1 GB, 7B: 15 GB in 4 shards); other options override',
      })
      .option('arch', { choices: ['llama', 'qwen2'] as const, describe: 'Architecture (model_type in config.json); default qwen2' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the random weights: same seed, same model' })
      .option('hidden', { type: 'number', describe: 'hidden_size (default 64)' })
      .option('layers', { type: 'number', describe: 'num_hidden_layers (default 2)' })
      .option('heads', { type: 'number', describe: 'num_attention_heads (default 4)' })
      .option('kv-heads', { type: 'number', describe: 'num_key_value_heads, grouped-query attention (default 2)' })
      .option('intermediate', { type: 'number', describe: 'intermediate_size (default 2.5 x hidden)' })
      .option('vocab', { type: 'number', describe: 'vocab_size: 256 bytes + BPE merges + 6 special tokens (default 512)' })
      .option('dtype', { choices: ['F32', 'F16', 'BF16'] as const, describe: 'dtype of the weights (default F32; BF16 with --preset)' })
      .option('init-std', { type: 'number', default: 0.02, describe: 'Standard deviation of the random weights (initializer_range); larger gives peakier predictions' })
      .option('json', { type: 'boolean', default: false, describe: 'Print config.json' })
      .example('rpv make-tiny-model models/tiny', 'A 2-layer Qwen2-style model with hidden size 64')
      .example('rpv make-tiny-model /tmp/llama --arch llama --hidden 128 --layers 4 --dtype BF16', 'A Llama-style model with llama3 rope scaling, BF16 weights')
      .example('rpv make-tiny-model models/qwen0.5b --preset qwen2.5-0.5b', 'Qwen2.5-0.5B\'s shapes (24 layers, hidden 896, vocab 151936), random BF16 weights'),
  handler: async (args) => {
    const { writeTinyModel } = await import('../model/tiny.js');
    const { Progress } = await import('../util/progress.js');
    let progress: InstanceType<typeof Progress> | null = null;
    const config = await writeTinyModel(args.dir, {
      preset: args.preset,
      onProgress: (written, total) => {
        if (total < 256 * 2 ** 20) return;
        progress ??= new Progress({ label: 'make-tiny-model', total: Math.round(total / 2 ** 20), unit: 'MiB' });
        progress.tick(Math.round(written / 2 ** 20) - progress.done);
      },
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
    (progress as InstanceType<typeof Progress> | null)?.finish();
    if (args.json) {
      process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `wrote ${args.dir}: ${config.model_type}, ${config.num_hidden_layers} layers, hidden ${config.hidden_size}, ` +
        `${config.num_attention_heads} heads / ${config.num_key_value_heads} kv heads, vocab ${config.vocab_size}, ${config.torch_dtype}\n` +
        `  files: ${(await import('node:fs')).readdirSync(args.dir).sort().join(' ')}\n` +
        `  next: rpv score --model ${args.dir} --text "Hello"\n`,
    );
  },
};
