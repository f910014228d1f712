import type { CommandModule } from 'yargs';

/** Vision tower presets: the published config and tensor names (random weights), or a tiny one of the family for tests. */
const TOWER_PRESETS = {
  'clip-vit-b16': { family: 'clip', preset: 'clip-vit-b16' },
  'siglip-so400m': { family: 'siglip', preset: 'siglip-so400m' },
  'internvit-300m': { family: 'internvit', preset: 'internvit-300m' },
  'clip-tiny': { family: 'clip', preset: 'tiny' },
  'siglip-tiny': { family: 'siglip', preset: 'tiny' },
  'internvit-tiny': { family: 'internvit', preset: 'tiny' },
} as const;
type TowerPresetName = keyof typeof TOWER_PRESETS;
const LM_PRESETS = ['qwen2.5-0.5b', 'qwen2.5-1.5b', 'qwen2.5-7b'] as const;
/** InternVL chat folders: tower + mlp1 + language model in one folder (src/model/internvl-tiny.ts). */
const INTERNVL_PRESETS = ['internvl2.5-1b', 'internvl-tiny'] as const;

interface MakeTinyModelArgs {
  dir: string;
  preset?: (typeof LM_PRESETS)[number] | TowerPresetName | (typeof INTERNVL_PRESETS)[number];
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
        choices: [...LM_PRESETS, ...(Object.keys(TOWER_PRESETS) as TowerPresetName[]), ...INTERNVL_PRESETS],
        describe:
          'A real model\'s shapes with random weights: language models (BF16; 0.5B: 1 GB, 1.5B: 3.1 GB, 7B: 15 GB in 4 shards; other options override), ' +
          'or vision towers for --encoder hf: (clip-vit-b16: CLIPVisionModel ViT-B/16 224 px; siglip-so400m: SiglipVisionModel so400m/14 384 px; ' +
          'internvit-300m: InternViT-300M-448px; BF16 unless --dtype) and their tiny variants for tests (clip-tiny, siglip-tiny, internvit-tiny: 32 px, F32), ' +
          'or a whole InternVL chat folder (internvl2.5-1b: InternVL2_5-1B\'s config and tensor names, InternViT-300M + mlp1 + Qwen2.5-0.5B, 0.94B parameters, BF16, 1.9 GB; ' +
          'internvl-tiny: the same layout at 32 px with a 2-layer language model, F32)',
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
      .example('rpv make-tiny-model models/qwen0.5b --preset qwen2.5-0.5b', 'Qwen2.5-0.5B\'s shapes (24 layers, hidden 896, vocab 151936), random BF16 weights')
      .example('rpv make-tiny-model models/internvl --preset internvl2.5-1b', 'InternVL2_5-1B\'s layout (vision_model, mlp1, language_model), random BF16 weights: model.path and --encoder hf: of the same folder')
      .example('rpv make-tiny-model models/internvit --preset internvit-300m', 'InternViT-300M-448px\'s config and tensor names, random BF16 weights: rpv convert ... --encoder hf:models/internvit'),
  handler: async (args) => {
    if ((INTERNVL_PRESETS as readonly string[]).includes(args.preset ?? '')) {
      await writeInternVL(args.dir, args.preset as (typeof INTERNVL_PRESETS)[number], args);
      return;
    }
    if (args.preset !== undefined && args.preset in TOWER_PRESETS) {
      await writeTower(args.dir, args.preset as TowerPresetName, args);
      return;
    }
    const { writeTinyModel } = await import('../model/tiny.js');
    const { Progress } = await import('../util/progress.js');
    let progress: InstanceType<typeof Progress> | null = null;
    const config = await writeTinyModel(args.dir, {
      preset: args.preset as (typeof LM_PRESETS)[number] | undefined,
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

/** `--preset` of a vision tower: writeTinyTower, then one line on what was written. */
async function writeTower(dir: string, name: TowerPresetName, args: MakeTinyModelArgs): Promise<void> {
  const { writeTinyTower } = await import('../vision/index.js');
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { family, preset } = TOWER_PRESETS[name];
  await writeTinyTower(dir, { family, preset, dtype: args.dtype ?? (preset === 'tiny' ? 'F32' : 'BF16'), seed: args.seed });
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  if (args.json) {
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
    return;
  }
  const vision = (config.vision_config ?? config) as Record<string, unknown>;
  const bytes = fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  process.stdout.write(
    `wrote ${dir}: ${family} vision tower (${name}), ${String(vision.num_hidden_layers)} layers, hidden ${String(vision.hidden_size)}, ` +
      `image ${String(vision.image_size)} px, patch ${String(vision.patch_size)}, ${(bytes / 2 ** 20).toFixed(1)} MiB\n` +
      `  files: ${fs.readdirSync(dir).sort().join(' ')}\n` +
      `  next: rpv convert <export> --out <shards> --encoder hf:${dir}\n`,
  );
}

/** `--preset internvl2.5-1b|internvl-tiny`: writeTinyInternVL, then one line on what was written. */
async function writeInternVL(dir: string, preset: (typeof INTERNVL_PRESETS)[number], args: MakeTinyModelArgs): Promise<void> {
  const { writeTinyInternVL } = await import('../model/internvl-tiny.js');
  const fs = await import('node:fs');
  const path = await import('node:path');
  const config = await writeTinyInternVL(dir, { preset, seed: args.seed, dtype: args.dtype, initStd: args['init-std'] });
  if (args.json) {
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
    return;
  }
  const llm = config.llm_config as Record<string, unknown>;
  const vision = config.vision_config as Record<string, unknown>;
  const bytes = fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  process.stdout.write(
    `wrote ${dir}: InternVL chat (${preset}): InternViT ${String(vision.num_hidden_layers)} layers at ${String(vision.image_size)} px, mlp1, ` +
      `${String(llm.model_type)} ${String(llm.num_hidden_layers)} layers, hidden ${String(llm.hidden_size)}, vocab ${String(llm.vocab_size)}, ${String(config.torch_dtype)}, ${(bytes / 2 ** 20).toFixed(1)} MiB\n` +
      `  files: ${fs.readdirSync(dir).sort().join(' ')}\n` +
      `  next: rpv convert <export> --out <shards> --encoder hf:${dir}, then rpv train with model.path=${dir} projector.type=internvl_mlp1\n`,
  );
}
