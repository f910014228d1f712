import os from 'node:os';
import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';
import { BACKEND_NAMES, type BackendName } from '../model/backend.js';

interface ConvertArgs {
  input: string;
  out: string;
  'input-format'?: string;
  'media-root'?: string;
  'default-role'?: string;
  format: 'arrow' | 'parquet' | 'both';
  dtype: 'float16' | 'float32';
  fps: number;
  'min-frames': number;
  'max-frames': number;
  'frame-size': number;
  encoder: string;
  backend: BackendName;
  features?: string;
  workers: number;
  'videos-per-process'?: number;
  batch?: number;
  'max-shard-bytes': string;
  compression: 'zstd' | 'snappy' | 'none';
  part?: string;
  resume: boolean;
  overwrite: boolean;
  strict: boolean;
  'missing-media': 'skip' | 'text-only';
  json: boolean;
}

/** `256MiB`, `1GB`, `1000000` -> bytes. */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$/i.exec(String(text));
  if (!m) throw new RpvError(`convert: --max-shard-bytes "${text}": expected a size like 256MiB, 1GB or 1000000`);
  const unit = (m[2] ?? '').toLowerCase().replace(/b$/, '');
  const powers: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40 };
  const mult = powers[unit];
  if (mult === undefined) throw new RpvError(`convert: --max-shard-bytes "${text}": unknown unit`);
  return Math.round(Number(m[1]) * mult);
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** `rpv convert --help`'s epilogue: the hf: settings, each with an example. */
const HF_SETTINGS_HELP = `Vision towers (--encoder hf:<folder>[#key=value,...]; details in src/features/README.md):
  layer=-1|-2|N        hidden state of that block, counted as transformers' hidden_states
                       (0 = the first block's input); default -2 for CLIP (LLaVA), -1 otherwise
                         --encoder "hf:models/clip-vit-base-patch16#layer=-1"
  tokens=patches|cls|mean
                       every patch token (default), the class token, or their mean
                         --encoder "hf:models/clip-vit-base-patch16#layer=-1,tokens=cls"   1 x 768
  pool=N               N x N average pooling of the patch grid (LLaVA-OneVision's 2x2)
                       on any grid, the last windows partial (27x27 -> 14x14)
                         --encoder "hf:models/siglip-so400m-patch14-384#pool=2"   196 x 1152
  shuffle=0.5          InternVL's pixel shuffle (v2); default 0.5 for InternViT, 1 otherwise
                         --encoder hf:models/InternVL2_5-1B   1024 patches -> 256 x 4096`;

export const command: CommandModule<object, ConvertArgs> = {
  command: 'convert <input>',
  describe: 'Convert a raw export (video + dialogues) into Arrow/Parquet shards',
  builder: (yargs) =>
    yargs
      .positional('input', { type: 'string', demandOption: true, describe: 'Export folder or annotation file' })
      .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder for shards and index.json' })
      .option('input-format', { type: 'string', describe: 'Input format (default: auto-detected): rpv, internvl, sharegpt, mmrole, chatharuhi, rolebench' })
      .option('media-root', {
        type: 'string',
        describe: "Folder media paths are relative to (default: the input folder or the input file's folder); given explicitly, absolute media paths inside it are accepted",
      })
      .option('default-role', { type: 'string', describe: 'Role of InternVL / ShareGPT records without a "role" field (who speaks the assistant turns); without it they are skipped' })
      .option('format', { choices: ['arrow', 'parquet', 'both'] as const, default: 'arrow' as const, describe: 'Shard format: Arrow IPC (training) or Parquet (interchange)' })
      .option('dtype', { choices: ['float16', 'float32'] as const, default: 'float16' as const, describe: 'On-disk dtype of frame features' })
      .option('fps', { type: 'number', default: 1, describe: 'Sampling: frames per second of video, before clamping' })
      .option('min-frames', { type: 'number', default: 4, describe: 'Sampling: fewest frames per video' })
      .option('max-frames', { type: 'number', default: 16, describe: 'Sampling: most frames per video' })
      .option('frame-size', { type: 'number', default: 224, describe: 'Frames are scaled to N x N before encoding' })
      .option('encoder', {
        type: 'string',
        default: 'grid',
        describe:
          'Frame encoder: grid, grid:cells=N[,tokens=frame|cell], tfjs:<folder>, or hf:<folder>[#key=value,...]: a CLIP, SigLIP or ' +
          'InternViT vision tower from a Hugging Face folder, frames preprocessed as its processor does (--frame-size does not apply; settings below)',
      })
      .option('backend', { choices: BACKEND_NAMES, default: 'auto' as const, describe: 'tfjs backend of a tfjs: encoder (webgpu: see the README\'s Backends section)' })
      .option('features', { type: 'string', describe: 'Folder of precomputed features (<video id>.npy|.safetensors) instead of an encoder' })
      .option('workers', { type: 'number', default: os.availableParallelism(), describe: 'ffmpeg processes at once (each decodes a batch of videos)' })
      .option('videos-per-process', { type: 'number', describe: 'Videos per ffmpeg process (consecutive, up to 120 s of video); 1 = one process per video [default: 8, fewer for large frames]' })
      .option('batch', { type: 'number', deprecated: 'use --videos-per-process', describe: 'Old name of --videos-per-process' })
      .option('max-shard-bytes', { type: 'string', default: '64MiB', describe: 'Rotate shards at this size (Arrow size of the rows); each shard is cut into blocks of at most 16 MiB the loader reads one at a time' })
      .option('compression', { choices: ['zstd', 'snappy', 'none'] as const, default: 'zstd' as const, describe: 'Parquet compression' })
      .option('part', { type: 'string', describe: 'Convert part i of N (i from 0), by hash of the video: i/N; join parts with rpv merge' })
      .option('resume', { type: 'boolean', default: false, describe: 'Continue an interrupted conversion into the same --out' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'Replace a dataset already in --out' })
      .option('strict', { type: 'boolean', default: false, describe: 'Stop with exit code 1 at the first bad record instead of skipping it' })
      .option('missing-media', { choices: ['skip', 'text-only'] as const, default: 'skip' as const, describe: 'A record whose media file is missing: skip it, or keep it as a text-only row' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the summary as JSON (no progress bar)' })
      .example('rpv convert data/sample --out shards/sample', 'Convert the sample export to Arrow shards')
      .example('rpv convert data/export --out shards/x --format both --part 0/4', 'Part 0 of 4 (e.g. one task of a Slurm array), Arrow and Parquet')
      .example('rpv convert data/export --out shards/x --resume', 'Continue after Ctrl-C or a crash')
      .example('rpv convert ex -o s --encoder hf:models/clip', 'Features from a CLIP vision tower (settings below)')
      .example('rpv convert llamafactory/train.json --out shards/x --media-root /data --default-role "Captain Nova"', 'LLaMA-Factory data: absolute video paths under /data, records without a role')
      .epilogue(HF_SETTINGS_HELP),
  handler: async (args) => {
    const { convertExport } = await import('../convert/convert.js');
    const controller = new AbortController();
    let interrupts = 0;
    const onSignal = () => {
      interrupts++;
      if (interrupts > 1) process.exit(130);
      process.stderr.write('\nconvert: stopping (finishing nothing new; Ctrl-C again to quit at once)...\n');
      controller.abort(new RpvError('convert: interrupted'));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let summary;
    try {
      summary = await convertExport({
        input: args.input,
        out: args.out,
        inputFormat: args['input-format'],
        mediaRoot: args['media-root'],
        defaultRole: args['default-role'],
        shardFormat: args.format,
        dtype: args.dtype,
        fps: args.fps,
        minFrames: args['min-frames'],
        maxFrames: args['max-frames'],
        frameSize: args['frame-size'],
        encoder: args.encoder,
        encoderBackend: args.backend,
        features: args.features,
        workers: args.workers,
        videosPerProcess: args['videos-per-process'] ?? args.batch,
        maxShardBytes: parseBytes(args['max-shard-bytes']),
        compression: args.compression,
        part: args.part,
        resume: args.resume,
        overwrite: args.overwrite,
        strict: args.strict,
        missingMedia: args['missing-media'],
        progress: !args.json,
        signal: controller.signal,
        log: (line) => process.stderr.write(`${line}\n`),
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (summary.interrupted) {
      process.stderr.write(
        `convert: interrupted; ${summary.shards} finished shard(s) kept in ${summary.out}; run the same command with --resume to finish\n`,
      );
      process.exitCode = 130;
      return;
    }
    const index = summary.index!;
    const c = index.counts;
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ...summary, index: undefined, totals: index.totals, schema: index.schema }, null, 2)}\n`);
    } else {
      const lines = [
        `converted ${c.converted} of ${c.read} records (${summary.inputFormat}) into ${index.totals.rows} rows, ${index.totals.dialogues} dialogues, ${index.totals.frames} frames` +
          (c.grouped ? ` (${c.grouped} records shared a video with another)` : ''),
        `skipped   ${c.skipped}` +
          (c.skipped > 0 ? `: ${Object.entries(summary.skippedByReason).map(([k, v]) => `${k} ${v}`).join(', ')} (reasons in index.json "skipped")` : ''),
        `shards    ${index.totals.shards} file(s), ${formatBytes(index.totals.bytes)} in ${summary.out}` + (summary.resumedShards ? ` (${summary.resumedShards} kept from the interrupted run)` : ''),
        `schema    ${index.schema.tokensPerFrame} token(s) x ${index.schema.featureDim} dims per frame, ${index.schema.dtype}; encoder ${index.encoder.id}`,
        `time      ${summary.elapsedSec.toFixed(1)} s` +
          (summary.videosProcessed > 0 ? `, ${(summary.videosProcessed / summary.elapsedSec).toFixed(2)} videos/s` : ''),
      ];
      for (const s of index.skipped.slice(0, 10)) lines.push(`  skip ${s.source}${s.line !== undefined ? `:${s.line}` : ''}: ${s.reason}`);
      if (index.skipped.length > 10) lines.push(`  ... ${index.skipped.length - 10} more in index.json`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (c.converted === 0) process.exitCode = 2;
  },
};
