/**
 * Conversion throughput: `npx tsx bench/convert.ts [--clips 24] [--reps 5] [--frame-size 224] [--size 160x120 --fps 10]`
 *
 * Makes (if missing) the sample export under bench/data/convert-sample-<clips>/ (with `--size` or
 * `--fps` other than the sample's 160x120 at 10 fps: convert-sample-<clips>-<WxH>-<fps>/, e.g.
 * phone-sized 480x854 at 30 fps, far heavier to decode), then measures in
 * one run, after two warm-up rounds, `reps` rounds each measuring everything below back to back
 * (the ratio rpv/ceiling is taken within each round; medians kept):
 *   1. the ceiling: ffmpeg alone decoding just the sampled frames of every clip (the same
 *      one-pass select filter rpv uses, `buildExtractArgs` with a null output; durations probed
 *      beforehand, untimed), one process per clip, 1 process at a time and 2 at a time;
 *   2. `convertExport` (probe + sampling + extraction + grid encoder + Arrow shards + index) with
 *      --workers 1 and --workers 2;
 *   3. for reference, ffmpeg alone with up to 8 clips per process (`buildBatchExtractArgs`, null
 *      outputs), as rpv batches them: how much of rpv's time is process start-up it saves.
 * Prints ms per video and videos/s beside the ceiling with the same concurrency, CPU per video
 * (this process and its children), and the workers-2 speedup; checks the converted rows (count,
 * frames per the sampling rule); appends one JSON line per case to bench/results.jsonl.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { convertExport } from '../src/convert/convert.js';
import { buildBatchExtractArgs, buildExtractArgs, fpsModeFlagFor } from '../src/media/extract.js';
import { describeFfmpeg } from '../src/media/ffmpeg.js';
import { probeVideo } from '../src/media/probe.js';
import { sampleFrameTimes } from '../src/media/sampling.js';
import { parseClipRender, writeSampleExport } from '../src/media/sample-export.js';
import { readShardIndex } from '../src/shard/index-file.js';
import { readShard } from '../src/shard/read.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    clips: { type: 'string', default: '24' },
    reps: { type: 'string', default: '5' },
    'frame-size': { type: 'string', default: '224' },
    size: { type: 'string', default: '160x120' },
    fps: { type: 'string', default: '10' },
  },
});
const clips = Number(args.clips);
const reps = Math.max(1, Number(args.reps));
const frameSize = Number(args['frame-size']);
const render = parseClipRender(args.size!, Number(args.fps));
const standard = render.width === 160 && render.height === 120 && render.fps === 10;
const exportDir = path.join(here, 'data', `convert-sample-${clips}${standard ? '' : `-${render.width}x${render.height}-${render.fps}`}`);

if (!existsSync(path.join(exportDir, 'annotations.jsonl'))) {
  console.log(`making the sample export (${clips} clips, ${render.width}x${render.height} at ${render.fps} fps) in ${path.relative(process.cwd(), exportDir)}`);
  await writeSampleExport(exportDir, { clips, render, progress: true });
}
const records = (await fs.readFile(path.join(exportDir, 'annotations.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; video: string });
const files = records.map((r) => path.join(exportDir, r.video));

// The ceiling's plan (untimed): the sampled times of every clip.
const { ffmpeg } = await describeFfmpeg();
const fpsModeFlag = fpsModeFlagFor(ffmpeg.version);
const plans = await Promise.all(files.map(async (file) => ({ file, times: sampleFrameTimes((await probeVideo(file)).durationSec) })));

function runFfmpeg(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg.path, argv, { stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}`))));
  });
}

/**
 * Run every plan through ffmpeg alone, `concurrency` processes at a time, `perProcess` clips per
 * process (1: the ceiling; more: batched as rpv does); seconds.
 */
async function ceiling(concurrency: number, perProcess = 1): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < plans.length) {
        const take = plans.slice(next, next + perProcess);
        next += take.length;
        await runFfmpeg(
          take.length === 1
            ? buildExtractArgs(take[0]!.file, take[0]!.times, { frameSize, output: 'null', fpsModeFlag })
            : buildBatchExtractArgs(take.map((p) => ({ file: p.file, timesSec: p.times })), { frameSize, output: 'null', fpsModeFlag }),
        );
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function rpv(workers: number): Promise<{ sec: number; out: string }> {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-bench-convert-'));
  const t0 = performance.now();
  await convertExport({ input: exportDir, out, workers, frameSize, overwrite: true });
  return { sec: (performance.now() - t0) / 1000, out };
}

async function check(out: string): Promise<boolean> {
  const index = await readShardIndex(out);
  let ok = index.totals.rows === records.length && index.counts.skipped === 0;
  for (const entry of index.shards) {
    for (const row of await readShard(path.join(out, entry.file), entry.format, { sha256: entry.sha256 })) {
      const want = sampleFrameTimes(row.duration_sec!);
      ok &&= row.num_frames === want.length && row.frame_times.every((t, i) => t === want[i]);
    }
  }
  return ok;
}

/**
 * CPU seconds used so far by this process and its waited-for children (ffmpeg, ffprobe), from
 * /proc (Linux): unlike wall time, barely moved by other load on a shared machine.
 */
async function cpuSec(): Promise<number | null> {
  try {
    const stat = await fs.readFile('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]); // utime stime cutime cstime
    return ticks / 100; // USER_HZ
  } catch {
    return null;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Warm-up: page cache, ffmpeg binary, JIT.
for (let w = 0; w < 2; w++) {
  await ceiling(2);
  await rpv(2).then(({ out }) => fs.rm(out, { recursive: true, force: true }));
}

const cases: Record<string, unknown>[] = [];
const base = { bench: 'convert', clips: records.length, source: `${render.width}x${render.height}@${render.fps}`, frameSize, reps, cpus: os.availableParallelism(), loadavg1: Number(os.loadavg()[0]!.toFixed(2)), node: process.version, ffmpeg: ffmpeg.version, time: new Date().toISOString() };
const results: Record<number, { rpvSec: number; ceilSec: number }> = {};
const busy: Record<number, number | undefined> = {};
interface Samples { ceil: number[]; ceilBatched: number[]; mine: number[]; ratio: number[]; ceilCpu: number[]; mineCpu: number[]; mineBusy: number[]; ceilBusy: number[]; correct: boolean }
const samples: Record<number, Samples> = {
  1: { ceil: [], ceilBatched: [], mine: [], ratio: [], ceilCpu: [], mineCpu: [], mineBusy: [], ceilBusy: [], correct: true },
  2: { ceil: [], ceilBatched: [], mine: [], ratio: [], ceilCpu: [], mineCpu: [], mineBusy: [], ceilBusy: [], correct: true },
};
// Every round measures all six back to back, so a slow drift of the machine (other tenants of a
// shared host) touches rpv and its ceiling alike; the ratio is taken within each round.
for (let r = 0; r < reps; r++) {
  for (const workers of [1, 2]) {
    const m = samples[workers]!;
    let c0 = await cpuSec();
    const ceilSec = await ceiling(workers);
    let c1 = await cpuSec();
    m.ceil.push(ceilSec);
    if (c0 !== null && c1 !== null) {
      m.ceilCpu.push(c1 - c0);
      m.ceilBusy.push((c1 - c0) / ceilSec);
    }
    m.ceilBatched.push(await ceiling(workers, 8));
    c0 = await cpuSec();
    const { sec, out } = await rpv(workers);
    c1 = await cpuSec();
    if (c0 !== null && c1 !== null) {
      m.mineCpu.push(c1 - c0);
      m.mineBusy.push((c1 - c0) / sec);
    }
    m.mine.push(sec);
    m.ratio.push(sec / ceilSec);
    m.correct &&= await check(out);
    await fs.rm(out, { recursive: true, force: true });
  }
}
for (const workers of [1, 2]) {
  const { ceil, ceilBatched, mine, ratio, ceilCpu, mineCpu, mineBusy, ceilBusy, correct } = samples[workers]!;
  const rpvSec = median(mine);
  const ceilSec = median(ceil);
  results[workers] = { rpvSec, ceilSec };
  const n = records.length;
  const batchedSec = median(ceilBatched);
  const vsCeiling = median(ratio);
  const spread = `${Math.min(...ratio).toFixed(2)}-${Math.max(...ratio).toFixed(2)}`;
  const cpu = mineCpu.length
    ? { rpvCpuMsPerVideo: (1000 * median(mineCpu)) / n, ceilingCpuMsPerVideo: (1000 * median(ceilCpu)) / n, rpvCoresBusy: median(mineBusy), ceilingCoresBusy: median(ceilBusy) }
    : {};
  busy[workers] = cpu.rpvCoresBusy;
  console.log(
    `workers ${workers}: rpv ${(n / rpvSec).toFixed(2)} videos/s, ${((1000 * rpvSec) / n).toFixed(0)} ms/video | ` +
      `ceiling (ffmpeg alone, ${workers} at a time) ${(n / ceilSec).toFixed(2)} videos/s, ${((1000 * ceilSec) / n).toFixed(0)} ms/video | ` +
      `rpv/ceiling time ${vsCeiling.toFixed(2)}x (median of ${reps} rounds, range ${spread}; target <= 1.3x) | correct ${correct}`,
  );
  console.log(
    `           for reference, ffmpeg alone with 8 clips per process: ${((1000 * batchedSec) / n).toFixed(0)} ms/video (rpv/that ${(rpvSec / batchedSec).toFixed(2)}x)`,
  );
  if (cpu.rpvCpuMsPerVideo !== undefined) {
    console.log(
      `           CPU per video (process + ffmpeg/ffprobe children): rpv ${cpu.rpvCpuMsPerVideo.toFixed(0)} ms, ceiling ${cpu.ceilingCpuMsPerVideo!.toFixed(0)} ms ` +
        `(${(cpu.rpvCpuMsPerVideo / cpu.ceilingCpuMsPerVideo!).toFixed(2)}x); cores busy: rpv ${cpu.rpvCoresBusy!.toFixed(2)}, ceiling ${cpu.ceilingCoresBusy!.toFixed(2)}`,
    );
  }
  cases.push(
    { ...base, case: `ceiling-ffmpeg-w${workers}`, workers, sec: ceilSec, videosPerSec: n / ceilSec, msPerVideo: (1000 * ceilSec) / n, cpuMsPerVideo: cpu.ceilingCpuMsPerVideo, coresBusy: cpu.ceilingCoresBusy },
    { ...base, case: `ffmpeg-batched8-w${workers}`, workers, sec: batchedSec, videosPerSec: n / batchedSec, msPerVideo: (1000 * batchedSec) / n },
    { ...base, case: `rpv-convert-w${workers}`, workers, sec: rpvSec, videosPerSec: n / rpvSec, msPerVideo: (1000 * rpvSec) / n, vsCeiling, vsCeilingRange: ratio.map((x) => Number(x.toFixed(3))), vsBatched: rpvSec / batchedSec, cpuMsPerVideo: cpu.rpvCpuMsPerVideo, coresBusy: cpu.rpvCoresBusy, correct },
  );
}
// Where rpv's time per video goes (sequential, one stage at a time, one clip per ffmpeg process):
// the probe (in-process for mp4), extraction to RGB, and the encoder (on the main thread).
{
  const { extractFrames } = await import('../src/media/extract.js');
  const { createEncoder } = await import('../src/features/encoder.js');
  const encoder = await createEncoder('grid');
  let probeMs = 0;
  let extractMs = 0;
  let encodeMs = 0;
  for (const plan of plans) {
    let t = performance.now();
    await probeVideo(plan.file);
    probeMs += performance.now() - t;
    t = performance.now();
    const frames = await extractFrames(plan.file, plan.times, { frameSize });
    extractMs += performance.now() - t;
    t = performance.now();
    await encoder.encode(frames, frameSize);
    encodeMs += performance.now() - t;
  }
  const n = plans.length;
  const stages = { probeMs: probeMs / n, extractMs: extractMs / n, encodeMs: encodeMs / n };
  console.log(
    `stages per video (sequential): probe ${stages.probeMs.toFixed(1)} ms, ffmpeg extract to RGB ${stages.extractMs.toFixed(0)} ms, ` +
      `grid encoder ${stages.encodeMs.toFixed(0)} ms; ceiling ${((1000 * results[1]!.ceilSec) / n).toFixed(0)} ms`,
  );
  cases.push({ ...base, case: 'rpv-convert-stages', ...stages });
}
const speedup = results[1]!.rpvSec / results[2]!.rpvSec;
const ceilSpeedup = results[1]!.ceilSec / results[2]!.ceilSec;
// With 1 worker rpv already keeps more than one core busy (the next batch's ffmpeg runs while this
// thread encodes), so on a CPU-bound machine 2 workers can gain at most cpus / (cores busy with 1).
const bound = busy[1] ? Math.min(2, base.cpus / busy[1]) : undefined;
console.log(
  `--workers 2 vs 1: rpv ${speedup.toFixed(2)}x faster${bound ? ` (at most ${bound.toFixed(2)}x on ${base.cpus} cores: 1 worker keeps ${busy[1]!.toFixed(2)} busy)` : ''}; ` +
    `ffmpeg alone ${ceilSpeedup.toFixed(2)}x (${base.cpus} cores, shared machine: load ${base.loadavg1})`,
);
cases.push({ ...base, case: 'rpv-convert-workers-speedup', speedup, ceilingSpeedup: ceilSpeedup, speedupBound: bound });
await fs.appendFile(path.join(here, 'results.jsonl'), cases.map((c) => JSON.stringify(c)).join('\n') + '\n');
console.log(`appended ${cases.length} lines to bench/results.jsonl`);
