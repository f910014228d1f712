/**
 * Fixtures for the training tests: a small shard dataset written with the shard writer (videos
 * whose features encode a colour, dialogues whose role names it) and a tiny model folder.
 */
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { writeShardFile } from '../../src/shard/write.js';
import { writeShardIndex } from '../../src/shard/index-file.js';
import { type ShardIndex, type VideoRow } from '../../src/index.js';
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION } from '../../src/shard/schema.js';
import { writeTinyModel } from '../../src/model/tiny.js';

export const COLOURS = ['red', 'green', 'blue', 'yellow'];
export const FEATURE_DIM = 8;

export interface DatasetShape {
  videos?: number;
  shards?: number;
  frames?: number;
  dialogues?: number;
  /** Cut each shard into blocks of at most this many Arrow bytes (default: the writer's 16 MiB, one block). */
  blockBytes?: number;
}

/** `videos` rows over `shards` Arrow shards; frame features one-hot the clip's colour. */
export async function writeDataset(dir: string, { videos = 12, shards = 2, frames = 4, dialogues = 3, blockBytes }: DatasetShape = {}): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const rows: VideoRow[] = [];
  for (let v = 0; v < videos; v++) {
    const colour = COLOURS[v % COLOURS.length]!;
    const feats = new Float32Array(frames * FEATURE_DIM);
    for (let f = 0; f < frames; f++) {
      feats[f * FEATURE_DIM + (v % COLOURS.length)] = 1;
      feats[f * FEATURE_DIM + 4 + (f % 4)] = 0.5;
    }
    const role = v % 2 === 0 ? 'Pixel' : '小橘';
    rows.push({
      video_id: `clip-${String(v).padStart(3, '0')}`,
      source: `annotations.jsonl:${v + 1}`,
      role,
      language: 'en',
      platform: null,
      profile: v % 3 === 0 ? `${role} loves colours.` : null,
      summary: `A ${colour} square.`,
      duration_sec: frames,
      num_frames: frames,
      frame_times: Float64Array.from({ length: frames }, (_, i) => i + 0.5),
      frames: feats,
      dialogues: Array.from({ length: dialogues }, (_, d) => ({
        dialogue_id: `d${d}`,
        turns: [
          { speaker: 'viewer', text: d % 2 ? 'What colour is it?' : 'Tell me the colour.' },
          { speaker: role, text: `It is ${colour}.` },
          ...(d === 2 ? [{ speaker: 'viewer', text: 'Sure?' }, { speaker: role, text: `Yes, ${colour}!` }] : []),
        ],
      })),
    });
  }
  const schema = { featureDim: FEATURE_DIM, tokensPerFrame: 1, dtype: 'float32' as const };
  const per = Math.ceil(rows.length / shards);
  const entries = [];
  for (let s = 0; s < shards; s++) {
    const part = rows.slice(s * per, (s + 1) * per);
    entries.push(await writeShardFile(part, path.join(dir, `shard-${String(s).padStart(5, '0')}.arrow`), { format: 'arrow', schema, blockBytes }));
  }
  const index: ShardIndex = {
    format: SHARD_FORMAT_NAME,
    version: SHARD_FORMAT_VERSION,
    created: '2026-01-01T00:00:00.000Z',
    schema: { ...schema, columns: SHARD_COLUMNS },
    sampling: { fps: 1, minFrames: 4, maxFrames: 16, frameSize: 32 },
    encoder: { id: 'test-onehot' },
    shards: entries,
    totals: {
      rows: rows.length,
      dialogues: rows.length * dialogues,
      frames: rows.length * frames,
      bytes: entries.reduce((a, e) => a + e.bytes, 0),
      shards: entries.length,
    },
    counts: { read: rows.length, converted: rows.length, skipped: 0 },
    skipped: [],
  };
  await writeShardIndex(dir, index);
  return dir;
}

/** A tiny qwen2-layout model (1 layer, hidden 32). */
export async function writeModel(dir: string): Promise<string> {
  await writeTinyModel(dir, { hiddenSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, vocabSize: 320, seed: 3 });
  return dir;
}

/** Recipe text for the fixtures. */
export function recipeText(out: string, shards: string, model: string, extra = ''): string {
  return `# rpv train recipes/test.yaml
output_dir: ${out}
seed: 7
model: {path: ${model}, backend: wasm}
data: {shards: ${shards}, heldout_fraction: 0.25, batch_size: 4, workers: 0}
prompt: {max_tokens: 256, profile_max_tokens: 24}
lora: {r: 4, alpha: 8, dropout: 0.1, target_modules: [q, v]}
optimizer: {lr: 0.01}
train: {max_steps: 6, grad_accum_steps: 2, projector_warmup_steps: 1}
eval: {every_steps: 3, focus_words: [red, green, blue, yellow]}
checkpoint: {every_steps: 3, keep_last: 2}
${extra}`;
}
