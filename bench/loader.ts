/**
 * Loader throughput: `npx tsx bench/loader.ts [--gb 2] [--workers 2] [--batch-size 32] [--shard-mb 32]
 * [--verify both|true|false] [--reps 1]` (`--generate-only` makes the dataset and stops; `--formats
 * arrow` skips Parquet)
 *
 * Makes (if missing) a synthetic dataset under bench/data/loader-<gb>gb/ shaped like Video60k:
 * 16 frames x 768-dim float16 features per video, about 12 dialogues per video, Arrow and
 * Parquet shards. Then measures, in one run, raw file reads (the ceiling), the loader on the
 * Arrow shards and on the Parquet shards (shuffle on), each with its shard checks (sha256 by
 * block, the default) and without (`--verify both`, the default: their cost in samples/s, in the
 * same run; `--reps N` alternates N epochs of each and keeps the median), prints each figure beside
 * the ceiling and appends one JSON line per case to bench/results.jsonl. A dataset generated
 * before block hashes existed has none: delete it to make it again.
 *
 * `--tokens 256 --dim 4096` gives each frame InternVL's video tokens instead (InternViT-300M
 * pixel-shuffled: 16 frames x 256 tokens x 4,096 float16 values = 32 MiB per video; use a batch
 * that fits, e.g. `--batch-size 2 --gb 1`): the dataset folder's name carries the size.
 *
 * Memory: `npx tsx bench/loader.ts --memory [--memory-shard-mb 32,256,1024] [--prefetch-mb 512]
 * [--block-mb 16]` makes (if missing) the same 2 GB of rows as Arrow shards of each size, in one
 * pass (bench/data/loader-<gb>gb-<size>mb/, with blocks of at most --block-mb: a huge value
 * gives shards of one block, as written before blocks existed), then runs one shuffled epoch per
 * shard size, each in a fresh process, and prints its peak RSS (the kernel's VmHWM for that
 * process) beside prefetchBytes, with the bytes the loader says it held and its bound. Before
 * generating it checks the free disk space.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchLoader } from '../src/loader/bench.js';
import { createLoader } from '../src/loader/loader.js';
import { ShardWriter } from '../src/shard/write.js';
import { writeShardIndex } from '../src/shard/index-file.js';
import { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION, type FeatureSchema, type ShardFileFormat, type ShardIndex, type VideoRow } from '../src/shard/schema.js';
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
    memory: { type: 'boolean', default: false },
    'memory-shard-mb': { type: 'string', default: '32,256,1024' },
    'prefetch-mb': { type: 'string', default: '512' },
    'block-mb': { type: 'string', default: '16' },
    verify: { type: 'string', default: 'both' },
    reps: { type: 'string', default: '1' },
    tokens: { type: 'string', default: '1' },
    dim: { type: 'string', default: '768' },
    /** Internal: one memory case, in a child process (prints one JSON line). */
    'memory-run': { type: 'string' },
  },
});
const gb = Number(args.gb);
const FRAMES = 16;
const TOKENS = Number(args.tokens);
const DIM = Number(args.dim);
if (!(Number.isInteger(TOKENS) && TOKENS >= 1 && Number.isInteger(DIM) && DIM >= 1)) throw new Error(`bench loader: --tokens and --dim must be positive integers, got ${args.tokens} and ${args.dim}`);
/** The default size keeps its old folder names; others carry tokens x dim. */
const SIZE_SUFFIX = TOKENS === 1 && DIM === 768 ? '' : `-${TOKENS}x${DIM}`;
const dir = args.dir ?? path.join(here, 'data', `loader-${gb}gb${SIZE_SUFFIX}`);
const DIALOGUES = 12;
const MiB = 1024 * 1024;
const MB = 1e6;

interface Target {
  dir: string;
  shardMb: number;
  formats: ShardFileFormat[];
}

/** Write the synthetic rows once into every target (each its own shard size and formats). */
async function makeDatasets(targets: Target[], blockBytes?: number): Promise<void> {
  const schema: FeatureSchema = { featureDim: DIM, tokensPerFrame: TOKENS, dtype: 'float16' };
  const perVideo = FRAMES * TOKENS * DIM * 2 + DIALOGUES * 4 * 70;
  const videos = Math.ceil((gb * 1e9) / perVideo);
  const writers = [];
  for (const t of targets) {
    await fs.rm(`${t.dir}.partial`, { recursive: true, force: true });
    writers.push(new ShardWriter({ dir: `${t.dir}.partial`, schema, formats: t.formats, maxShardBytes: t.shardMb * MiB, blockBytes }));
  }
  const what = targets.map((t) => `${t.shardMb} MiB shards`).join(', ');
  const progress = new Progress({ label: `bench loader: generating (${what})`, total: videos, unit: 'videos' });
  let state = 0x9e3779b9;
  let dialogues = 0;
  for (let v = 0; v < videos; v++) {
    const frames = new Float32Array(FRAMES * TOKENS * DIM);
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
    for (const w of writers) await w.add(row);
    progress.tick();
  }
  progress.finish();
  for (const [i, t] of targets.entries()) {
    const finished = await writers[i]!.close();
    const shards = finished.flatMap((f) => f.entries);
    const arrowBytes = shards.filter((s) => s.format === t.formats[0]).reduce((a, s) => a + s.bytes, 0);
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
    await writeShardIndex(`${t.dir}.partial`, index);
    await fs.rm(t.dir, { recursive: true, force: true });
    await fs.rename(`${t.dir}.partial`, t.dir);
  }
}

/** The kernel's peak resident set of this process (VmHWM), in bytes; null off Linux. */
function peakRssBytes(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** One memory case in this (fresh) process: one shuffled epoch; prints one JSON line. */
async function memoryRun(source: string): Promise<void> {
  const prefetchBytes = Number(args['prefetch-mb']) * MiB;
  const batchSize = Number(args['batch-size']);
  const loader = createLoader({ source, batchSize, seed: 0, shuffle: true, workers: Number(args.workers), prefetchBytes });
  const info = await loader.describe();
  const index = JSON.parse(readFileSync(path.join(source, 'index.json'), 'utf8')) as ShardIndex;
  const shards = index.shards.filter((s) => s.format === 'arrow');
  const rssBefore = process.memoryUsage.rss();
  const hwmBefore = peakRssBytes();
  let sampled = rssBefore;
  const timer = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage.rss())), 20);
  const seen = new Set<string>();
  let samples = 0;
  let firstBatchSec = 0;
  const t0 = performance.now();
  for await (const batch of loader) {
    if (samples === 0) firstBatchSec = (performance.now() - t0) / 1000;
    samples += batch.dims.batch;
    batch.sampleIds.forEach((id, i) => batch.padding[i] || seen.add(id));
  }
  const sec = (performance.now() - t0) / 1000;
  clearInterval(timer);
  const stats = loader.stats();
  await loader.close();
  const line = {
    shards: shards.length,
    shardMB: Math.round((shards.reduce((n, s) => n + s.bytes, 0) / shards.length / MB) * 10) / 10,
    blocksPerShard: Math.round((shards.reduce((n, s) => n + (s.blockDialogues?.length ?? 1), 0) / shards.length) * 10) / 10,
    prefetchMB: Math.round(prefetchBytes / MB),
    boundMB: Math.round(stats.boundBytes / MB),
    peakHeldMB: Math.round(stats.peakResidentBytes / MB),
    peakRssMB: Math.round((peakRssBytes() ?? sampled) / MB),
    sampledPeakRssMB: Math.round(sampled / MB),
    rssBeforeMB: Math.round(rssBefore / MB),
    hwmBeforeMB: hwmBefore === null ? null : Math.round(hwmBefore / MB),
    firstBatchSec: Math.round(firstBatchSec * 100) / 100,
    samplesPerSec: Math.round(samples / sec),
    sec: Math.round(sec * 10) / 10,
    blocksLoaded: stats.blocksLoaded,
    correct: seen.size === info.samples,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function memoryBench(): Promise<void> {
  const sizes = args['memory-shard-mb']!.split(',').map(Number);
  const blockMb = Number(args['block-mb']);
  const suffix = blockMb === 16 ? '' : `-blocks${blockMb}mb`;
  const targets: Target[] = sizes.map((mb) => ({ dir: path.join(here, 'data', `loader-${gb}gb${SIZE_SUFFIX}-${mb}mb${suffix}`), shardMb: mb, formats: ['arrow'] }));
  const missing = targets.filter((t) => !existsSync(path.join(t.dir, 'index.json')));
  if (missing.length > 0) {
    const fsStat = statfsSync(here);
    const free = fsStat.bavail * fsStat.bsize;
    const need = missing.length * gb * 1e9 * 1.1;
    console.log(`free disk under ${here}: ${(free / 1e9).toFixed(1)} GB; the missing datasets need about ${(need / 1e9).toFixed(1)} GB`);
    if (free < need * 1.2) throw new Error(`bench loader --memory: not enough disk: ${(free / 1e9).toFixed(1)} GB free, about ${(need / 1e9).toFixed(1)} GB needed`);
    await mkdirParents(missing);
    await makeDatasets(missing, blockMb * MiB);
  }
  const prefetchMb = Number(args['prefetch-mb']);
  console.log(`loader memory, ${gb} GB of float16 features in Arrow shards, one shuffled epoch per shard size, ${args.workers} workers, batch ${args['batch-size']}, prefetchBytes ${prefetchMb} MiB, each case in a fresh process:`);
  const lines: string[] = [];
  const stamp = new Date().toISOString();
  for (const t of targets) {
    const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--memory-run', t.dir, '--gb', String(gb), '--tokens', String(TOKENS), '--dim', String(DIM), '--workers', args.workers!, '--batch-size', args['batch-size']!, '--prefetch-mb', String(prefetchMb)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 20,
    });
    if (child.status !== 0) throw new Error(`bench loader --memory: the ${t.shardMb} MiB case exited ${child.status}`);
    const r = JSON.parse(child.stdout.trim().split('\n').pop()!) as Record<string, number | boolean | null>;
    console.log(
      `  ${String(t.shardMb).padStart(5)} MiB shards (${r.shards} files of ${r.shardMB} MB, ${r.blocksPerShard} blocks each): peak RSS ${r.peakRssMB} MB against prefetchBytes ${prefetchMb} MiB ` +
        `(${r.rssBeforeMB} MB before the epoch); the loader held at most ${r.peakHeldMB} MB, its bound ${r.boundMB} MB; ` +
        `first batch after ${r.firstBatchSec} s, ${r.samplesPerSec} samples/s; every dialogue once: ${r.correct}`,
    );
    lines.push(JSON.stringify({ bench: 'loader', case: `loader-memory-${t.shardMb}mb${SIZE_SUFFIX}`, format: 'arrow', tokensPerFrame: TOKENS, featureDim: DIM, shardMiB: t.shardMb, blockMiB: blockMb, workers: Number(args.workers), batchSize: Number(args['batch-size']), ...r, cpus: os.cpus().length, loadavg1: Number(os.loadavg()[0]!.toFixed(2)), node: process.version, time: stamp, dataset: path.relative(here, t.dir), gb }));
  }
  await fs.appendFile(path.join(here, 'results.jsonl'), `${lines.join('\n')}\n`);
  console.log(`appended ${lines.length} lines to bench/results.jsonl`);
}

async function mkdirParents(targets: Target[]): Promise<void> {
  for (const t of targets) await fs.mkdir(path.dirname(t.dir), { recursive: true });
}

if (args['memory-run']) {
  await memoryRun(args['memory-run']);
} else if (args.memory) {
  await memoryBench();
} else {
  if (!existsSync(path.join(dir, 'index.json'))) await makeDatasets([{ dir, shardMb: Number(args['shard-mb']), formats: ['arrow', 'parquet'] }]);
  if (args['generate-only']) process.exit(0);
  const cases = await benchLoader({
    dir,
    workers: Number(args.workers),
    batchSize: Number(args['batch-size']),
    formats: args.formats!.split(',') as ('arrow' | 'parquet')[],
    verify: args.verify === 'both' ? 'both' : args.verify === 'true',
    reps: Number(args.reps),
    log: (line) => console.log(line),
  });
  const stamp = new Date().toISOString();
  const lines = cases.map((c) => JSON.stringify({ ...c, case: `${c.case}${SIZE_SUFFIX}`, tokensPerFrame: TOKENS, featureDim: DIM, time: stamp, dataset: path.relative(here, dir), gb })).join('\n');
  await fs.appendFile(path.join(here, 'results.jsonl'), `${lines}\n`);
  console.log(`appended ${cases.length} lines to bench/results.jsonl`);
}
