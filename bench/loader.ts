/**
 * Loader throughput: `npx tsx bench/loader.ts [--gb 2] [--workers 2] [--batch-size 32] [--shard-mb 32]`
 * (`--generate-only` makes the dataset and stops; `--formats arrow` skips Parquet)
 *
 * Makes (if missing) a synthetic dataset under bench/data/loader-<gb>gb/ shaped like Video60k:
 * 16 frames x 768-dim float16 features per video, about 12 dialogues per video, Arrow and
 * Parquet shards. Then measures, in one run, raw file reads (the ceiling), the loader on the
 * Arrow shards and on the Parquet shards (shuffle on), prints each figure beside the ceiling and
 * appends one JSON line per case to bench/results.jsonl.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchLoader } from '../src/loader/bench.js';
import { ShardWriter } from '../src/shard/write.js';
import { writeShardIndex } from '../src/shard/index-file.js';
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION, type FeatureSchema, type ShardIndex, type VideoRow } from '../src/shard/schema.js';
import { Progress } from '../src/util/progress.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    gb: { type: 'string', default: '2' },
    workers: { type: 'string', default: '2' },
    'batch-size': { type: 'string', default: '32' },
    'shard-mb': { type: 'string', default: '32' },
    formats: { type: 'string', default: 'arrow,parquet' },
    dir: { type: 'string' },
    'generate-only': { type: 'boolean', default: false },
  },
});
const gb = Number(args.gb);
const dir = args.dir ?? path.join(here, 'data', `loader-${gb}gb`);
const FRAMES = 16;
const DIM = 768;
const DIALOGUES = 12;

async function makeDataset(): Promise<void> {
  const schema: FeatureSchema = { featureDim: DIM, tokensPerFrame: 1, dtype: 'float16' };
  const perVideo = FRAMES * DIM * 2 + DIALOGUES * 4 * 70;
  const videos = Math.ceil((gb * 1e9) / perVideo);
  const tmp = `${dir}.partial`;
  await fs.rm(tmp, { recursive: true, force: true });
  const writer = new ShardWriter({ dir: tmp, schema, formats: ['arrow', 'parquet'], maxShardBytes: Number(args['shard-mb']) * 1024 * 1024 });
  const progress = new Progress({ label: 'bench loader: generating', total: videos, unit: 'videos' });
  let state = 0x9e3779b9;
  let dialogues = 0;
  for (let v = 0; v < videos; v++) {
    const frames = new Float32Array(FRAMES * DIM);
    for (let i = 0; i < frames.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      frames[i] = ((state >>> 0) / 4294967296) * 4 - 2;
    }
    const role = ['Mei', 'Tom', 'Ana'][v % 3]!;
    const n = DIALOGUES - 1 + (v % 3); // 11-13, about 12
    dialogues += n;
    const row: VideoRow = {
      video_id: `vid${String(v).padStart(7, '0')}`,
      source: `annotations.jsonl:${v + 1}`,
      role,
      language: v % 2 ? 'en' : 'zh',
      platform: 'douyin',
      profile: `${role} is a cheerful vlogger who comments on what the camera shows.`,
      summary: `Video ${v}: a coloured shape moves across the frame.`,
      duration_sec: 20,
      num_frames: FRAMES,
      frame_times: Float64Array.from({ length: FRAMES }, (_, f) => (f + 0.5) * 1.25),
      frames,
      dialogues: Array.from({ length: n }, (_, d) => ({
        dialogue_id: `d${d}`,
        turns: [
          { speaker: 'user', text: `What is happening in the video right now, ${role}? (${v}.${d})` },
          { speaker: role, text: `The shape is moving to the left and turning blue — 看起来很有趣!` },
          { speaker: 'user', text: 'Why do you think it moves that way?' },
          { speaker: role, text: 'Probably because the camera pans; the background shifts too.' },
        ],
      })),
    };
    await writer.add(row);
    progress.tick();
  }
  const finished = await writer.close();
  progress.finish();
  const shards = finished.flatMap((f) => f.entries);
  const arrowBytes = shards.filter((s) => s.format === 'arrow').reduce((a, s) => a + s.bytes, 0);
  const index: ShardIndex = {
    format: SHARD_FORMAT_NAME,
    version: SHARD_FORMAT_VERSION,
    created: new Date().toISOString(),
    schema: { ...schema, columns: SHARD_COLUMNS },
    sampling: { fps: 1, minFrames: 4, maxFrames: 16, frameSize: 224 },
    encoder: { id: 'synthetic-random' },
    shards,
    totals: { rows: videos, dialogues, frames: videos * FRAMES, bytes: arrowBytes, shards: finished.length },
    counts: { read: videos, converted: videos, skipped: 0 },
    skipped: [],
  };
  await writeShardIndex(tmp, index);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rename(tmp, dir);
}

if (!existsSync(path.join(dir, 'index.json'))) await makeDataset();
if (args['generate-only']) process.exit(0);
const cases = await benchLoader({
  dir,
  workers: Number(args.workers),
  batchSize: Number(args['batch-size']),
  formats: args.formats!.split(',') as ('arrow' | 'parquet')[],
  log: (line) => console.log(line),
});
const stamp = new Date().toISOString();
const lines = cases.map((c) => JSON.stringify({ ...c, time: stamp, dataset: path.relative(here, dir), gb })).join('\n');
await fs.appendFile(path.join(here, 'results.jsonl'), `${lines}\n`);
console.log(`appended ${cases.length} lines to bench/results.jsonl`);
