import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

interface GenerateArgs {
  run: string;
  message: string;
  video?: string;
  row?: string;
  shards?: string;
  role?: string;
  profile?: string;
  summary?: string;
  model?: string;
  encoder?: string;
  'max-tokens': number;
  temperature: number;
  'top-p': number;
  seed: number;
  json?: boolean;
}

export const command: CommandModule<object, GenerateArgs> = {
  command: 'generate <run>',
  describe: "Reply in character with a trained adapter: a video (file or shard row), a role, a message -> the role's reply, streamed",
  builder: (y) =>
    y
      .positional('run', { type: 'string', demandOption: true, describe: 'Run folder (its latest checkpoint) or a checkpoint folder' })
      .option('message', { alias: 'm', type: 'string', demandOption: true, describe: "The other party's message" })
      .option('video', { type: 'string', describe: "A video file, sampled and encoded with the training dataset's settings" })
      .option('row', { type: 'string', describe: 'A video_id in the shards: its frames, role and summary' })
      .option('shards', { type: 'string', describe: "Shard folder for --row and the sampling settings (default: the run's data.shards)" })
      .option('role', { type: 'string', describe: "The role to play (default with --row: the row's role)" })
      .option('profile', { type: 'string', describe: 'Static profile text for the system prompt' })
      .option('summary', { type: 'string', describe: "The video's summary as the static profile (inference, as in the paper)" })
      .option('model', { type: 'string', describe: "Base model folder (default: the run's model.path)" })
      .option('encoder', { type: 'string', describe: "Encoder spec for --video (default: the dataset's)" })
      .option('max-tokens', { type: 'number', default: 128, describe: 'Most new tokens' })
      .option('temperature', { type: 'number', default: 0, describe: '0 = greedy; > 0 samples' })
      .option('top-p', { type: 'number', default: 0.9, describe: 'Nucleus mass when sampling' })
      .option('seed', { type: 'number', default: 0, describe: 'Sampling seed' })
      .option('json', { type: 'boolean', describe: 'Print one JSON object at the end instead of streaming' })
      .example('$0 generate runs/demo --row clip-007 -m "Which way is it heading?"', 'Reply about a video of the dataset')
      .example('$0 generate runs/demo --video my.mp4 --role "Professor Pixel" -m "What colour is it?" --temperature 0.7', 'Reply about a new video, sampled'),
  handler: async (args) => {
    if (args.video && args.row) throw new RpvError('generate: give --video or --row, not both');
    const { loadForGeneration, generateReply, videoFeatures, encoderSpecOf } = await import('../train/generate.js');
    const run = await loadForGeneration(args.run, { modelPath: args.model });
    try {
      const shards = args.shards ?? run.recipe.data.shards;
      let role = args.role;
      let profile: string | null = args.profile ?? args.summary ?? null;
      let video = null;
      if (args.row) {
        const { readShardIndex } = await import('../shard/index-file.js');
        const { readShard } = await import('../shard/read.js');
        const path = await import('node:path');
        const index = await readShardIndex(shards);
        let found = null;
        for (const s of index.shards.filter((e) => e.format === 'arrow')) {
          const rows = await readShard(path.join(shards, s.file));
          found = rows.find((r) => r.video_id === args.row) ?? null;
          if (found) break;
        }
        if (!found) throw new RpvError(`generate: ${shards}: no row with video_id ${args.row}`);
        role ??= found.role;
        profile ??= found.summary;
        if (run.recipe.data.use_video && found.num_frames > 0) {
          video = { features: found.frames, frameTimes: found.frame_times, tokensPerFrame: index.schema.tokensPerFrame, featureDim: index.schema.featureDim };
        }
      } else if (args.video) {
        const { readShardIndex } = await import('../shard/index-file.js');
        const index = await readShardIndex(shards);
        if (run.recipe.data.use_video) video = await videoFeatures(args.video, index.sampling, args.encoder ?? encoderSpecOf(index));
      }
      if (!role) throw new RpvError('generate: name the role with --role (or use --row)');
      const reply = await generateReply({
        model: run.model,
        role,
        profile,
        video,
        history: [{ role: 'user', content: args.message }],
        maxNewTokens: args['max-tokens'],
        temperature: args.temperature,
        topP: args['top-p'],
        seed: args.seed,
        frameTimeText: run.recipe.prompt.frame_time_text,
        onText: args.json ? undefined : (t) => process.stdout.write(t),
      });
      if (args.json) process.stdout.write(`${JSON.stringify({ role, ...reply })}\n`);
      else process.stdout.write('\n');
    } finally {
      run.model.dispose();
    }
  },
};
