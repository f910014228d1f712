import type { CommandModule } from 'yargs';

interface SampleExportArgs {
  dir: string;
  seed: number;
  clips: number;
  dialogues: number;
  size: string;
  fps: number;
  json: boolean;
}

export const command: CommandModule<object, SampleExportArgs> = {
  command: 'sample-export <dir>',
  describe: 'Write a small realistic raw export (ffmpeg clips + bilingual role-play dialogues)',
  builder: (yargs) =>
    yargs
      .positional('dir', { type: 'string', demandOption: true, describe: 'Folder to write (created if missing)' })
      .option('seed', { type: 'number', default: 1, describe: 'Seed of every choice: same seed, same export' })
      .option('clips', { type: 'number', default: 24, describe: 'Number of clips (3–40 s each)' })
      .option('dialogues', { type: 'number', default: 8, describe: 'Dialogues per clip' })
      .option('size', { type: 'string', default: '160x120', describe: 'Frame size WxH of the clips (even numbers; shapes scale with it)' })
      .option('fps', { type: 'number', default: 10, describe: 'Frame rate of the clips' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the summary as JSON' })
      .example('rpv sample-export data/sample', 'Write 24 clips and their dialogues to data/sample')
      .example('rpv sample-export /tmp/s --clips 6 --seed 7', 'A smaller export with other content')
      .example('rpv sample-export /tmp/phone --size 480x854 --fps 30', 'Phone-sized vertical clips (heavier to decode, for benchmarks)'),
  handler: async (args) => {
    const { parseClipRender, writeSampleExport } = await import('../demo/sample-export.js');
    const render = parseClipRender(args.size ?? '160x120', args.fps ?? 10);
    const summary = await writeSampleExport(args.dir, {
      seed: args.seed,
      clips: args.clips,
      dialoguesPerClip: args.dialogues,
      progress: !args.json,
      render,
    });
    if (args.json) {
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      return;
    }
    const lines = [
      `wrote ${summary.dir}`,
      `  annotations.jsonl  ${summary.clips.length} records, ${summary.dialogues} dialogues, ${summary.turns} turns, roles: ${summary.roles.join(', ')}`,
      `  videos/            ${summary.clips.length} clips (${summary.videoCodec}, ${render.width}x${render.height}, ${render.fps} fps), ${summary.totalDurationSec} s in all, ${(summary.videoBytes / 1024).toFixed(0)} KiB`,
      `  facts.json         what each clip shows (colour, direction, shape, background)`,
      '',
      '  clip     secs  role             lang  shape   colour  direction  background  audio',
      ...summary.clips.map(
        (c) =>
          `  ${c.id.padEnd(8)} ${String(c.durationSec).padStart(4)}  ${c.role.padEnd(16 - (/[\u4e00-\u9fff]/.test(c.role) ? c.role.length : 0))} ${c.language.padEnd(5)} ${c.shape.padEnd(7)} ${c.colour.padEnd(7)} ${c.direction.padEnd(10)} ${c.background.padEnd(11)} ${c.hasAudio ? 'yes' : 'no'}`,
      ),
      '',
      `done in ${summary.elapsedSec.toFixed(1)} s; next: rpv convert ${summary.dir} --out <shards>`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  },
};
