/**
 * The loader benchmark, shared by `bench/loader.ts` and `rpv bench loader <shards>`:
 * 1. the ceiling: the same shard files read raw into memory (warm page cache: every file is read
 *    once untimed, then three timed passes with 1 reader and with `workers` concurrent readers;
 *    the fastest pass counts);
 * 2. the loader over those shards (shuffle on): samples/s, batches/s, feature MB/s delivered,
 *    shard MB/s consumed (all over the whole epoch, start-up included), time to the first batch,
 *    the steady rate after it, peak RSS, time next() waited; after a warm-up pass; once with its
 *    shard checks on (`loader-<format>`, the default: sha256 of every block read) and once off
 *    (`loader-<format>-unverified`), so the checks' cost (`verifyCost`) is measured in one run;
 * 3. the same for every other format present (Parquet).
 * It checks what it timed: every dialogue exactly once, and one sample's features equal to what
 * the converter's own reader (`readShard`) decodes.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { readShardIndex, shardsOfFormat } from '../shard/index-file.js';
import { readShardRows } from '../shard/source.js';
import type { ShardEntry, ShardFileFormat, VideoRow } from '../shard/schema.js';
import { shardBlocks } from '../shard/blocks.js';
import { blockHashesOf } from '../shard/verify.js';
import { runLoadTask, type LoadTask } from './task.js';
import { createLoader, type LoaderOptions } from './loader.js';
import { Progress } from '../util/progress.js';

export interface LoaderBenchOptions {
  /** Shard folder (with index.json). */
  dir: string;
  workers?: number;
  batchSize?: number;
  /** Formats to measure, when present in the index (default both). */
  formats?: ShardFileFormat[];
  seed?: number;
  prefetchBytes?: number;
  windowShards?: number;
  /**
   * The loader's shard checks (sha256 by block, ../shard/verify.ts): 'both' (default) times an
   * epoch with them and one without, in the same run, and reports the cost; true or false, one.
   */
  verify?: boolean | 'both';
  /** Timed epochs per mode, alternating between modes; the median counts (default 1). */
  reps?: number;
  /** Progress and result lines (default: stderr). */
  log?: (line: string) => void;
}

export interface LoaderBenchCase {
  bench: 'loader';
  case: string;
  format: ShardFileFormat;
  [key: string]: unknown;
}

const MB = 1e6;

export async function benchLoader(options: LoaderBenchOptions): Promise<LoaderBenchCase[]> {
  const { dir, workers = 2, batchSize = 32, seed = 0, verify = 'both', reps = 1, log = (l: string) => process.stderr.write(`${l}\n`) } = options;
  const modes = verify === 'both' ? [true, false] : [verify];
  const index = await readShardIndex(dir);
  const formats = (options.formats ?? ['arrow', 'parquet']).filter((f) => shardsOfFormat(index, f).length > 0);
  if (formats.length === 0) throw new RpvError(`bench loader: ${dir}: no shards of the requested formats`);
  const machine = { cpus: os.cpus().length, loadavg1: Number(os.loadavg()[0]!.toFixed(2)), node: process.version };
  const cases: LoaderBenchCase[] = [];
  for (const format of formats) {
    const shards = shardsOfFormat(index, format);
    const files = shards.map((s) => path.join(dir, s.file));
    const fileBytes = shards.reduce((n, s) => n + s.bytes, 0);

    // 1. Ceiling: raw reads of the same files, page cache warmed by an untimed pass.
    await readAll(files, 1);
    let one = 0;
    let many = 0;
    for (let rep = 0; rep < 3; rep++) {
      one = Math.max(one, await readAll(files, 1));
      many = Math.max(many, await readAll(files, workers));
    }
    const ceilingMBps = Math.max(one, many) / 1;
    const ceiling: LoaderBenchCase = {
      bench: 'loader',
      case: `raw-read-${format}`,
      format,
      files: files.length,
      fileMB: round(fileBytes / MB),
      oneReaderMBps: round(one),
      [`readers${workers}MBps`]: round(many),
      ceilingMBps: round(ceilingMBps),
      cache: 'warm',
      ...machine,
    };
    log(`raw read ${format} (warm page cache, best of 3, ${(fileBytes / MB).toFixed(fileBytes < 10 * MB ? 2 : 0)} MB in ${files.length} files): 1 reader ${one.toFixed(0)} MB/s, ${workers} readers ${many.toFixed(0)} MB/s -> ceiling ${ceilingMBps.toFixed(0)} MB/s`);
    cases.push(ceiling);

    // Correctness reference: the first sample of the first shard, decoded by the converter's reader
    // (its bytes checked against the index, as every reader of rows checks them).
    const [firstRow] = await readShardRows(dir, shards[0]!, { who: 'bench loader', verify: options.verify !== false });
    if (!firstRow || firstRow.dialogues.length === 0) throw new RpvError(`bench loader: ${files[0]}: first row has no dialogue`);
    const probeId = `${firstRow.video_id}/${firstRow.dialogues[0]!.dialogue_id}`;

    // 2. The loader: a warm-up pass (workers started, code optimised), then timed epochs, with
    // its shard checks on (the default) and off, alternating.
    const loaderOptions = { source: dir, batchSize, seed, shuffle: true, workers, format, prefetchBytes: options.prefetchBytes, windowShards: options.windowShards };
    let warm = 0;
    for await (const batch of createLoader({ ...loaderOptions, epoch: 1 })) if (++warm >= 20 || !batch) break;
    const runs = new Map<boolean, LoaderBenchCase[]>(modes.map((m) => [m, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (const verify of modes) runs.get(verify)!.push(await timeEpoch({ ...loaderOptions, verify }, { fileBytes, ceilingMBps, firstRow, probeId, log, machine }));
    }
    // Each mode's median epoch (by samples/s). On a shared machine one epoch can run at half or
    // twice another's rate, so the cost is the median over reps of 1 - verified / unverified
    // samples/s of the two epochs of one rep, which ran back to back under the same load.
    const best = new Map<boolean, LoaderBenchCase>();
    for (const [verify, list] of runs) {
      const sorted = [...list].sort((a, b) => (a.samplesPerSec as number) - (b.samplesPerSec as number));
      const median = sorted[(sorted.length - 1) >> 1]!;
      median.epochs = list.length;
      median.samplesPerSecOfEpochs = list.map((r) => r.samplesPerSec);
      best.set(verify, median);
    }
    const checked = best.get(true);
    const unchecked = best.get(false);
    if (checked && unchecked) {
      const on = runs.get(true)!;
      const off = runs.get(false)!;
      const pairCosts = on.map((r, i) => 1 - (r.samplesPerSec as number) / (off[i]!.samplesPerSec as number)).sort((a, b) => a - b);
      const cost = pairCosts.length % 2 ? pairCosts[pairCosts.length >> 1]! : (pairCosts[pairCosts.length / 2 - 1]! + pairCosts[pairCosts.length / 2]!) / 2;
      checked.verifyCostOfReps = pairCosts.map((c) => round(c, 3));
      // What the checks must cost at least: hashing the epoch's file bytes once on one core.
      const sha = await sha256MBps(files[0]!);
      const hashSec = fileBytes / MB / sha;
      checked.unverifiedSamplesPerSec = unchecked.samplesPerSec;
      checked.verifyCost = round(cost, 3);
      // The workers' share, measured as CPU time rather than wall time (far steadier under load):
      // every block of the format read and decoded on this thread, checked and unchecked in turn.
      const cpu = await taskCpuSec(dir, shards, index.schema.tokensPerFrame * index.schema.featureDim);
      checked.taskCpuSec = round(cpu.verified, 2);
      checked.taskCpuSecUnverified = round(cpu.unverified, 2);
      checked.taskCpuCost = round(cpu.verified / cpu.unverified - 1, 3);
      checked.sha256MBps = round(sha);
      checked.hashSecPerEpoch = round(hashSec, 2);
      checked.hashShareOfEpoch = round(hashSec / (unchecked.sec as number), 3);
      log(
        `loader ${format}: shard checks (sha256 by block) cost ${(cost * 100).toFixed(1)}% of samples/s (median over ${reps} back-to-back pair${reps === 1 ? '' : 's'} of epochs: ` +
          `${(checked.samplesPerSecOfEpochs as number[]).join(', ')} verified vs ${(unchecked.samplesPerSecOfEpochs as number[]).join(', ')} unverified; medians ${checked.samplesPerSec} vs ${unchecked.samplesPerSec}); ` +
          `hashing the epoch's ${(fileBytes / MB).toFixed(0)} MB at ${sha.toFixed(0)} MB/s (sha256, one core) takes ${hashSec.toFixed(2)} s, ` +
          `${((hashSec / (unchecked.sec as number)) * 100).toFixed(1)}% of the unverified epoch's ${unchecked.sec} s; ` +
          `reading and decoding every block once takes ${cpu.verified.toFixed(2)} s of CPU checked, ${cpu.unverified.toFixed(2)} s unchecked (+${((cpu.verified / cpu.unverified - 1) * 100).toFixed(1)}%)`,
      );
    }
    for (const verify of modes) cases.push(best.get(verify)!);
  }
  return cases;
}

/** One timed epoch of the loader, checked (every dialogue once, the probe's features equal `firstRow`'s). */
async function timeEpoch(
  options: LoaderOptions & { format: ShardFileFormat; verify: boolean },
  ctx: { fileBytes: number; ceilingMBps: number; firstRow: VideoRow; probeId: string; log: (line: string) => void; machine: Record<string, unknown> },
): Promise<LoaderBenchCase> {
  const { format, verify, batchSize, workers = 2 } = options;
  const { fileBytes, ceilingMBps, firstRow, probeId, log, machine } = ctx;
  const loader = createLoader(options);
  const info = await loader.describe();
  const seen = new Set<string>();
  let duplicates = 0;
  let batches = 0;
  let samples = 0;
  let featureBytes = 0;
  const rssBefore = process.memoryUsage.rss();
  let peakRss = rssBefore;
  let probe: Float32Array | undefined;
  const floatsPerFrame = info.schema.tokensPerFrame * info.schema.featureDim;
  const t0 = performance.now();
  let firstBatchSec = 0;
  const label = `loader ${format}${verify ? '' : ' unverified'}`;
  const progress = new Progress({ label: `bench ${label}`, total: info.batchesPerEpoch, unit: 'batches' });
  for await (const batch of loader) {
    progress.tick();
    if (batches === 0) firstBatchSec = (performance.now() - t0) / 1000;
    batches++;
    for (let i = 0; i < batch.dims.batch; i++) {
      const id = batch.sampleIds[i]!;
      featureBytes += batch.dialogues[i]!.numFrames * floatsPerFrame * 4;
      samples++;
      if (batch.padding[i]) continue;
      if (seen.has(id)) duplicates++;
      seen.add(id);
      if (id === probeId) {
        const base = i * batch.dims.frames * floatsPerFrame;
        probe = batch.frames.slice(base, base + batch.dialogues[i]!.numFrames * floatsPerFrame);
      }
    }
    if ((batches & 15) === 0) peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }
  const sec = (performance.now() - t0) / 1000;
  progress.finish();
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  const stats = loader.stats();
  await loader.close();
  const correct = duplicates === 0 && seen.size === info.samples && probe !== undefined && sameValues(probe, firstRow.frames);
  if (!correct) {
    throw new RpvError(
      `bench loader: ${format}: wrong output: ${seen.size} distinct samples of ${info.samples}, ${duplicates} duplicates, probe ${probeId} ${probe ? 'differs from readShard' : 'missing'}`,
    );
  }
  const featureMBps = featureBytes / MB / sec;
  const fileMBps = fileBytes / MB / sec;
  const result: LoaderBenchCase = {
    bench: 'loader',
    case: `loader-${format}${verify ? '' : '-unverified'}`,
    format,
    verify,
    workers,
    batchSize,
    shuffle: true,
    windowShards: loader.windowShards,
    prefetchMB: round(loader.prefetchBytes / MB),
    samples,
    batches,
    sec: round(sec),
    // Start-up: workers started, first window read and decoded.
    firstBatchSec: round(firstBatchSec, 2),
    // Rate after the first batch (steady state).
    steadySamplesPerSec: round((samples - batchSize) / Math.max(1e-9, sec - firstBatchSec)),
    samplesPerSec: round(samples / sec),
    batchesPerSec: round(batches / sec),
    featureMBps: round(featureMBps),
    fileMBps: round(fileMBps),
    ceilingMBps: round(ceilingMBps),
    featureVsCeiling: round(featureMBps / ceilingMBps, 3),
    fileVsCeiling: round(fileMBps / ceilingMBps, 3),
    peakRssMB: round(peakRss / MB),
    rssBeforeMB: round(rssBefore / MB),
    peakHeldMB: round(stats.peakResidentBytes / MB),
    boundMB: round(stats.boundBytes / MB),
    waitFraction: round(stats.waitMs / 1000 / sec, 3),
    correct,
    ...machine,
  };
  log(
    `${label} (shuffle, ${workers} workers, batch ${batchSize}): ${result.samplesPerSec} samples/s, ${result.batchesPerSec} batches/s, ` +
      `features ${featureMBps.toFixed(1)} MB/s = ${result.featureVsCeiling} x ceiling; shard bytes ${fileMBps.toFixed(1)} MB/s = ${result.fileVsCeiling} x ceiling; ` +
      `first batch after ${result.firstBatchSec} s, steady ${result.steadySamplesPerSec} samples/s; peak RSS ${result.peakRssMB} MB (${result.rssBeforeMB} MB before the epoch; held ${result.peakHeldMB} MB, bound ${result.boundMB} MB); next() waited ${((result.waitFraction as number) * 100).toFixed(0)}% of the time; checked: ${seen.size} samples once each, probe equal`,
  );
  return result;
}

/**
 * CPU seconds (user + system, this process) to read and decode every block of `shards` once as a
 * loader worker does (`runLoadTask` on this thread), with the checks and without: each block is
 * done both ways in turn, 3 times, the least of each kept, so load on the machine hits both alike.
 */
async function taskCpuSec(dir: string, shards: readonly ShardEntry[], floatsPerFrame: number): Promise<{ verified: number; unverified: number }> {
  const total = { verified: 0, unverified: 0 };
  for (const entry of shards) {
    const { count } = shardBlocks(entry);
    const hashes = blockHashesOf(entry);
    for (let b = 0; b < count; b++) {
      const task = (verify: boolean): LoadTask => ({
        name: entry.file,
        format: entry.format,
        floatsPerFrame,
        bytes: entry.bytes,
        sha256: entry.sha256,
        file: path.join(dir, entry.file),
        verify,
        ...(hashes ? { blockHashes: hashes } : {}),
        ...(count > 1 ? { block: { index: b, count } } : {}),
      });
      const least = { verified: Infinity, unverified: Infinity };
      for (let rep = 0; rep < 3; rep++) {
        for (const verify of [true, false]) {
          const t0 = process.cpuUsage();
          await runLoadTask(task(verify));
          const used = process.cpuUsage(t0);
          const key = verify ? 'verified' : 'unverified';
          least[key] = Math.min(least[key], (used.user + used.system) / 1e6);
        }
      }
      total.verified += least.verified;
      total.unverified += least.unverified;
    }
  }
  return total;
}

/** sha256 MB/s of one core over (up to 64 MB of) `file`, best of 3, as the checks hash it. */
async function sha256MBps(file: string): Promise<number> {
  const bytes = (await fs.readFile(file)).subarray(0, 64 * MB);
  let best = 0;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    createHash('sha256').update(bytes).digest();
    best = Math.max(best, bytes.length / MB / ((performance.now() - t0) / 1000));
  }
  return best;
}

/** MB/s reading every file fully into memory with `concurrency` readers. */
async function readAll(files: string[], concurrency: number): Promise<number> {
  let next = 0;
  let bytes = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.max(1, concurrency) }, async () => {
      while (next < files.length) {
        const file = files[next++]!;
        bytes += (await fs.readFile(file)).byteLength;
      }
    }),
  );
  return bytes / MB / ((performance.now() - t0) / 1000);
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
