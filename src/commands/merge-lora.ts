import type { CommandModule } from 'yargs';

interface MergeLoraArgs {
  model: string;
  adapter: string;
  out: string;
  json: boolean;
  dtype?: 'F32' | 'F16' | 'BF16';
}

export const command: CommandModule<object, MergeLoraArgs> = {
  command: 'merge-lora',
  describe: 'Fold a LoRA adapter into its base model and write a standard Hugging Face folder',
  builder: (yargs) =>
    yargs
      .option('model', { type: 'string', demandOption: true, describe: 'Base Hugging Face model folder' })
      .option('adapter', { type: 'string', demandOption: true, describe: 'Adapter folder (adapter_config.json + adapter_model.safetensors)' })
      .option('out', { type: 'string', demandOption: true, describe: 'Folder to write the merged model to' })
      .option('dtype', { choices: ['F32', 'F16', 'BF16'] as const, describe: "dtype of the merged weights (default: the base's; F32 keeps the adapter's delta exact)" })
      .option('json', { type: 'boolean', default: false, describe: 'Print the summary as JSON' })
      .example('rpv merge-lora --model models/tiny --adapter runs/demo/final --out models/tiny-merged', 'Merge the demo adapter')
      .example('rpv merge-lora --model qwen --adapter run/final --out merged --dtype F32', 'Keep the merged weights in float32'),
  handler: async (args) => {
    const { mergeLora } = await import('../model/merge.js');
    const { Progress } = await import('../util/progress.js');
    const bar = args.json ? null : new Progress({ label: 'merge-lora', unit: 'tensors' });
    const summary = await mergeLora(args.model, args.adapter, args.out, {
      dtype: args.dtype,
      progress: (done, total) => {
        if (!bar) return;
        bar.total = total;
        bar.tick(1);
      },
    });
    bar?.finish();
    if (args.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      return;
    }
    process.stdout.write(`wrote ${summary.outDir}: ${summary.merged} linears merged, ${summary.tensors} tensors (${summary.dtype}), config and tokenizer files copied\n`);
  },
};
