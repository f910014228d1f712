import type { CommandModule } from 'yargs';
import type { CausalLM } from '../model/decoder.js';
import type { VideoRow } from '../shard/schema.js';
import type { Recipe } from '../train/recipe.js';
import { RpvError } from '../util/errors.js';
import { closeNames, findShardRow, listForMessage, readShardRoles } from '../infer/shard-lookup.js';

interface GenerateArgs {
  run: string;
  message: string;
  video?: string;
  row?: string;
  shards?: string;
  role?: string;
  /** false: --no-profile. */
  profile?: string | false;
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
      .option('profile', {
        type: 'string',
        describe: "Static profile text for the system prompt (default: the one the run was trained with, e.g. the role's profile from its shards); --no-profile for none",
      })
      .option('summary', { type: 'string', describe: "The video's summary as the static profile (inference, as in the paper)" })
      .option('model', { type: 'string', describe: "Base model folder (default: the run's model.path)" })
      .option('encoder', { type: 'string', describe: "Encoder spec for --video (default: the dataset's)" })
      .option('max-tokens', { type: 'number', default: 128, describe: 'Most new tokens' })
      .option('temperature', { type: 'number', default: 0, describe: '0 = greedy; > 0 samples' })
      .option('top-p', { type: 'number', default: 0.9, describe: 'Nucleus mass when sampling' })
      .option('seed', { type: 'number', default: 0, describe: 'Sampling seed' })
      .option('json', { type: 'boolean', describe: 'Print one JSON object at the end instead of streaming' })
      .example('$0 generate runs/demo --row clip-08 -m "Which way is it heading?"', 'Reply about a video of the dataset')
      .example('$0 generate runs/demo --video my.mp4 --role "Professor Pixel" -m "What colour is it?" --temperature 0.7', 'Reply about a new video, sampled')
      .example('$0 generate runs/demo --video my.mp4 --role "Professor Pixel" --no-profile -m "Hi"', 'Without a static profile'),
  handler: async (args) => {
    if (args.video && args.row) throw new RpvError('generate: give --video or --row, not both');
    const { loadForGeneration, generateReply, videoFeatures, encoderSpecOf } = await import('../infer/generate.js');
    const run = await loadForGeneration(args.run, { modelPath: args.model });
    try {
      const shards = args.shards ?? run.recipe.data.shards;
      // Shard bytes are checked against index.json as they are read, unless the run turned that off.
      const lookup = { who: 'generate', verify: run.recipe.data.verify };
      let role = args.role;
      let row: VideoRow | null = null;
      let video = null;
      if (args.row) {
        const found = await findShardRow(shards, args.row, lookup);
        const index = found.index;
        row = found.row;
        if (!row) {
          const { videoIds } = await readShardRoles(shards, lookup);
          const close = closeNames(args.row, videoIds);
          const hint = close.length > 0 ? `close ids: ${close.join(', ')}` : `ids there: ${listForMessage(videoIds, 5)}`;
          throw new RpvError(`generate: ${shards}: no row with video_id ${args.row}; ${hint}`);
        }
        role ??= row.role;
        if (run.recipe.data.use_video && row.num_frames > 0) {
          video = { features: row.frames, frameTimes: row.frame_times, tokensPerFrame: index.schema.tokensPerFrame, featureDim: index.schema.featureDim };
        }
      } else if (args.video) {
        const { readShardIndex } = await import('../shard/index-file.js');
        const index = await readShardIndex(shards);
        const { checkRunEncoder } = await import('../train/encoder-check.js');
        checkRunEncoder('generate', run.checkpoint, run.encoderId, shards, index.encoder.id);
        if (run.recipe.data.use_video) video = await videoFeatures(args.video, index.sampling, args.encoder ?? encoderSpecOf(index), run.encoderId ?? index.encoder.id);
      }
      if (!role) throw new RpvError('generate: name the role with --role (or use --row)');
      if (args.role !== undefined && typeof args.profile !== 'string') {
        // A misspelt role would get no profile and a prompt the run never saw: refuse it, unless
        // the user brings the new role's profile.
        const { roles } = await readShardRoles(shards, lookup);
        if (!roles.has(args.role)) {
          const close = closeNames(args.role, [...roles.keys()], 1);
          throw new RpvError(
            `generate: --role "${args.role}" is not a role of ${shards}${close.length > 0 ? `: did you mean "${close[0]}"?` : ''} ` +
              `(roles there: ${listForMessage([...roles.keys()])}); to play a role the run was not trained on, give its --profile text`,
          );
        }
      }
      const { profile, description } = await chooseProfile(args, run.recipe, run.model, role, row, shards);
      process.stderr.write(`profile: ${description}\n`);
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
      if (args.json) process.stdout.write(`${JSON.stringify({ role, profile, ...reply })}\n`);
      else process.stdout.write('\n');
      if (reply.undecodableIds.length > 0) {
        const tokenizer = run.model.tokenizer!;
        const first = [...new Set(reply.undecodableIds)].slice(0, 5).join(', ');
        process.stderr.write(
          `generate: warning: ${reply.undecodableIds.length} of ${reply.tokenIds.length} generated token ids (${first}${reply.undecodableIds.length > 5 ? ', ...' : ''}) ` +
            `are not in the tokenizer of ${tokenizer.dir || 'the model'} (${tokenizer.vocabSize} tokens; the model's vocabulary has ${run.model.config.vocabSize}): the reply cannot show them\n`,
        );
      }
    } finally {
      run.model.dispose();
    }
  },
};

/** `--profile` / `--summary` / `--no-profile` as given, else the profile the run was trained with. */
async function chooseProfile(
  args: GenerateArgs,
  recipe: Recipe,
  model: CausalLM,
  role: string,
  row: VideoRow | null,
  shards: string,
): Promise<{ profile: string | null; description: string }> {
  if (args.profile === false) return { profile: null, description: 'none (--no-profile)' };
  if (args.profile !== undefined && args.summary !== undefined) throw new RpvError('generate: give --profile or --summary, not both');
  if (args.profile !== undefined) return { profile: args.profile, description: 'the text given with --profile' };
  if (args.summary !== undefined && recipe.prompt.static_profile !== 'summary') {
    return { profile: args.summary, description: `the summary given with --summary (the run was trained with prompt.static_profile ${recipe.prompt.static_profile})` };
  }
  const { trainedProfile, trainedProfileNeedsDataset } = await import('../infer/generation-profile.js');
  const { promptTokenizer } = await import('../train/bridge.js');
  let dataset = null;
  if (trainedProfileNeedsDataset(recipe, row)) {
    const { scanDataset } = await import('../train/dataset.js');
    dataset = await scanDataset(shards, { heldoutFraction: recipe.data.heldout_fraction, seed: recipe.seed, verify: recipe.data.verify, who: 'generate' });
  }
  const path = await import('node:path');
  return trainedProfile({
    recipe,
    tokenizer: promptTokenizer(model.tokenizer!),
    role,
    row,
    videoId: args.video ? path.basename(args.video) : undefined,
    summary: args.summary ?? null,
    dataset,
    shards,
  });
}
