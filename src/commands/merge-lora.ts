import type { CommandModule } from 'yargs';

/** The help's examples, as run against the folders `rpv demo` writes (a test runs each as written). */
export const MERGE_LORA_EXAMPLES: [string, string][] = [
  ['rpv merge-lora --model runs/demo-data/tiny-model --adapter runs/demo/adapter --out runs/demo-merged', "Merge the demo's final adapter into its base (the projector is copied beside)"],
  ['rpv merge-lora --model runs/demo-data/tiny-model --adapter runs/demo-text-only/adapter --out runs/demo-text-only-merged --dtype F32', 'The text-only run (no projector), merged weights in float32'],
];

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

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
      .example(MERGE_LORA_EXAMPLES),
  handler: async (args) => {
    const { mergeLora } = await import('../model/merge.js');
    const { Progress } = await import('../util/progress.js');
    const bar = args.json ? null : new Progress({ label: 'merge-lora', unit: 'tensors' });
    // Stopped (Ctrl-C, kill, a closed terminal): exit through process.exit, whose hook removes the
    // half-written weights and a folder this merge created (src/util/atomic.ts), 128 + the signal.
    const handlers = (Object.entries(SIGNAL_NUMBERS) as [NodeJS.Signals, number][]).map(([signal, n]) => {
      const handler = () => {
        process.stderr.write(`\nmerge-lora: stopped by ${signal}: the unfinished model.safetensors is removed (and ${args.out}, if this merge created it)\n`);
        process.exit(128 + n);
      };
      process.on(signal, handler);
      return [signal, handler] as const;
    });
    let summary;
    try {
      summary = await mergeLora(args.model, args.adapter, args.out, {
        dtype: args.dtype,
        progress: (done, total) => {
          if (!bar) return;
          bar.total = total;
          bar.tick(1);
        },
      });
    } finally {
      for (const [signal, handler] of handlers) process.off(signal, handler);
    }
    bar?.finish();
    if (args.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      return;
    }
    process.stdout.write(`wrote ${summary.outDir}: ${summary.merged} linears merged, ${summary.tensors} tensors (${summary.dtype}), config and tokenizer files copied\n`);
    process.stdout.write(
      summary.mlp1
        ? `an InternVL folder: vision_model unchanged, mlp1 ${summary.mlp1 === 'trained' ? 'as trained' : "as the base had it (the run's projector was frozen)"}, the LoRA merged into language_model\n`
        : summary.projector
        ? `the video projector (${summary.projector.join(', ')}) is copied beside it: a Hugging Face loader sees the text model; rpv's loadProjector(model, '${summary.outDir}') attaches it\n`
        : 'the adapter has no video projector: the merged model is text-only\n',
    );
  },
};
