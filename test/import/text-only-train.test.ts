import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ParsedItem, SourceRecord } from '../../src/convert/record.js';
import { chatharuhiFormat } from '../../src/convert/formats/chatharuhi.js';
import { rolebenchFormat } from '../../src/convert/formats/rolebench.js';
import { writeShardFile } from '../../src/shard/write.js';
import { writeShardIndex } from '../../src/shard/index-file.js';
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION, type ShardIndex, type VideoRow } from '../../src/index.js';
import { parseRecipe } from '../../src/train/recipe.js';
import { train } from '../../src/train/trainer.js';
import { readMetrics } from '../../src/train/metrics.js';
import { writeModel } from '../train/helpers.js';

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-textonly-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

async function records(format: typeof chatharuhiFormat, dir: string): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  for await (const item of format.read(dir, { root: dir }) as AsyncGenerator<ParsedItem>) if (item.kind === 'record') out.push(item.record);
  return out;
}

/** A text-only record as its shard row: no frames, no duration. */
function textOnlyRow(r: SourceRecord): VideoRow {
  return {
    video_id: r.id,
    source: `${r.file}:${r.line}`,
    role: r.role,
    language: r.language ?? null,
    platform: r.platform ?? null,
    profile: r.profile ?? null,
    summary: r.summary ?? null,
    duration_sec: null,
    num_frames: 0,
    frame_times: new Float64Array(0),
    frames: new Float32Array(0),
    dialogues: r.dialogues.map((d, i) => ({ dialogue_id: d.id ?? String(i), turns: d.turns })),
  };
}

describe('text-only rows from ChatHaruhi and RoleBench', () => {
  it('train through the same loader and loop, with no video tokens', async () => {
    const recs = [
      ...(await records(chatharuhiFormat, path.join(FIXTURES, 'chatharuhi'))),
      ...(await records(rolebenchFormat, path.join(FIXTURES, 'rolebench'))),
    ];
    expect(recs.every((r) => r.video === null)).toBe(true);
    const rows = recs.map(textOnlyRow);
    const shards = path.join(tmp, 'shards');
    await fs.mkdir(shards, { recursive: true });
    const schema = { featureDim: 8, tokensPerFrame: 1, dtype: 'float16' as const };
    const entry = await writeShardFile(rows, path.join(shards, 'shard-00000.arrow'), { format: 'arrow', schema });
    const index: ShardIndex = {
      format: SHARD_FORMAT_NAME,
      version: SHARD_FORMAT_VERSION,
      created: new Date(0).toISOString(),
      schema: { ...schema, columns: SHARD_COLUMNS },
      sampling: { fps: 1, minFrames: 4, maxFrames: 16, frameSize: 32 },
      encoder: { id: 'none' },
      shards: [entry],
      totals: { rows: rows.length, dialogues: rows.reduce((n, r) => n + r.dialogues.length, 0), frames: 0, bytes: entry.bytes, shards: 1 },
      counts: { read: rows.length, converted: rows.length, skipped: 0 },
      skipped: [],
    };
    await writeShardIndex(shards, index);
    const model = await writeModel(path.join(tmp, 'model'));
    const run = path.join(tmp, 'run');
    const recipe = parseRecipe(`# text-only import smoke run
output_dir: ${run}
seed: 3
model: {path: ${model}, backend: wasm}
data: {shards: ${shards}, heldout_fraction: 0.2, batch_size: 2, workers: 0}
prompt: {max_tokens: 512, profile_max_tokens: 32}
lora: {r: 4, alpha: 8, dropout: 0, target_modules: [q, v]}
optimizer: {lr: 0.01}
train: {max_steps: 3, grad_accum_steps: 1, projector_warmup_steps: 0}
eval: {every_steps: 3}
checkpoint: {every_steps: 3, keep_last: 1}
`);
    const result = await train(recipe, { log: () => {} });
    expect(result.steps).toBe(3);
    // Nothing skipped but the held-out split: every text-only dialogue rendered and trained.
    expect(Object.keys(result.skipped).filter((k) => k !== 'held-out')).toEqual([]);
    expect(result.lastEval!.samples).toBeGreaterThan(0);
    expect(Number.isFinite(result.lastEval!.loss)).toBe(true);
    const metrics = await readMetrics(path.join(run, 'metrics.jsonl'));
    const steps = metrics.filter((m) => m.type === 'train') as unknown as { loss: number }[];
    expect(steps).toHaveLength(3);
    for (const s of steps) expect(Number.isFinite(s.loss) && s.loss > 0).toBe(true);
  });
});
