/**
 * Conversion throughput:
 *   npx tsx bench/convert.ts [--clips 24] [--reps 5] [--frame-size 224] [--size 160x120 --fps 10]
 *                            [--ffmpeg auto|bundled|system|<path>]
 *
 * Makes (if missing) the sample export under bench/data/convert-sample-<clips>/ (with `--size` or
 * `--fps` other than the sample's 160x120 at 10 fps: convert-sample-<clips>-<WxH>-<fps>/, e.g.
 * phone-sized 480x854 at 30 fps, far heavier to decode), then measures in one run, after two
 * warm-up rounds, `reps` rounds each measuring everything below back to back, with 1 and with 2
 * processes at a time (the ratio rpv/ceiling is taken within each round; medians kept):
 *   1. the ceiling: the fastest way to get the same frames out of the same ffmpeg alone. Every clip's
 *      sampled frames (the one-pass select filter rpv uses, durations probed beforehand, untimed),
 *      scaled and converted to RGB24 as rpv asks, written to /dev/null, with several clips per
 *      process (`buildBatchExtractArgs`) in three schedules: 8 clips per process; rpv's own
 *      schedule (8, shrinking at the end so no process is left alone); one process per worker.
 *      The ceiling is the schedule with the lowest median time;
 *   2. `convertExport` (probe + sampling + extraction + grid encoder + Arrow shards + index) with
 *      --workers 1 and --workers 2;
 *   3. a secondary reference: ffmpeg alone with one process per clip, which rpv does not do
 *      (process start-up is a large share for short clips, and far larger with a system ffmpeg
 *      that loads many shared libraries).
 * Prints ms per video and videos/s beside the ceiling with the same concurrency, CPU per video
 * (this process and its children), the workers-2 speedup, and the ffmpeg build (path, version,
 * where it came from) beside the figures; checks the converted rows (count, frames per the
 * sampling rule); appends one JSON line per case to bench/results.jsonl, each naming the build.
 *
 * ffmpeg: the one rpv picks (FFMPEG_PATH, else ffmpeg on PATH, else the bundled static build), or
 * `--ffmpeg bundled` / `--ffmpeg system` / `--ffmpeg <path>` to measure another; rpv and its
 * ceiling always run the same binary.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { convertExport } from '../src/convert/convert.js';
import { buildBatchExtractArgs, buildExtractArgs, fpsModeFlagFor } from '../src/media/extract.js';
import { describeFfmpeg, locateBinary, resetFfmpegCache } from '../src/media/ffmpeg.js';
import { probeVideo } from '../src/media/probe.js';
import { sampleFrameTimes } from '../src/media/sampling.js';
import { parseClipRender, writeSampleExport } from '../src/demo/sample-export.js';
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
    ffmpeg: { type: 'string', default: 'auto' },
  },
});
const clips = Number(args.clips);
const reps = Math.max(1, Number(args.reps));
const frameSize = Number(args['frame-size']);
const render = parseClipRender(args.size!, Number(args.fps));
const standard = render.width === 160 && render.height === 120 && render.fps === 10;
const exportDir = path.join(here, 'data', `convert-sample-${clips}${standard ? '' : `-${render.width}x${render.height}-${render.fps}`}`);

/** Point FFMPEG_PATH at the chosen build before anything resolves ffmpeg (rpv reads the same variable). */
async function chooseFfmpeg(choice: string): Promise<void> {
  if (choice === 'auto') return;
  const env = { ...process.env, FFMPEG_PATH: undefined };
  let file: string;
  if (choice === 'bundled') file = (await locateBinary('ffmpeg', { env, skipPath: true })).path;
  else if (choice === 'system') {
    const found = await locateBinary('ffmpeg', { env }).catch(() => undefined);
    if (!found || found.source !== 'path') throw new Error('bench convert: --ffmpeg system: no ffmpeg on PATH (apt-get install ffmpeg)');
    file = found.path;
  } else file = path.resolve(choice);
  process.env.FFMPEG_PATH = file;
  resetFfmpegCache();
}
await chooseFfmpeg(args.ffmpeg!);

if (!existsSync(path.join(exportDir, 'annotations.jsonl'))) {
  console.log(`making the sample export (${clips} clips, ${render.width}x${render.height} at ${render.fps} fps) in ${path.relative(process.cwd(), exportDir)}`);
  await writeSampleExport(exportDir, { clips, render, progress: true });
}
const records = (await fs.readFile(path.join(exportDir, 'annotations.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; video: string });
const files = records.map((r) => path.join(exportDir, r.video));

// The ceiling's plan (untimed): the sampled times of every clip.
const { ffmpeg } = await describeFfmpeg();
const origin = args.ffmpeg !== 'auto' ? `--ffmpeg ${args.ffmpeg}` : ffmpeg.source === 'env' ? 'FFMPEG_PATH' : ffmpeg.source === 'path' ? 'on PATH, preferred by rpv' : 'bundled npm package';
const build = `${ffmpeg.path} (${origin}): ${ffmpeg.version.replace(/\s+Copyright.*$/, '')}`;
console.log(`ffmpeg used by rpv and by its ceiling: ${build}`);
const fpsModeFlag = fpsModeFlagFor(ffmpeg.version);
const plans = await Promise.all(files.map(async (file) => ({ file, times: sampleFrameTimes((await probeVideo(file)).durationSec) })));

function runFfmpeg(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg.path, argv, { stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}: ${ffmpeg.path} ${argv.join(' ')}`))));
  });
}

/**
 * rpv's arguments with every output sent to /dev/null instead of a pipe: the same frames (RGB24
 * at frameSize), written nowhere.
 */
function toDevNull(argv: string[]): string[] {
  return ['-y', ...argv.map((a) => (/^pipe:\d+$/.test(a) ? '/dev/null' : a))];
}

/** Clips the next ffmpeg process takes, given the clips left, the clip count and the concurrency. */
type Schedule = (left: number, total: number, concurrency: number) => number;
const BATCH = 8;
const SCHEDULES: Record<string, { label: string; take: Schedule }> = {
  batched8: { label: '8 clips per process', take: () => BATCH },
  // convertExport's guided batches: at most 8, and at most a worker's share of what is left.
  rpvBatches: { label: "rpv's batches (8, shrinking at the end)", take: (left, _n, c) => Math.max(1, Math.min(BATCH, Math.ceil(left / c))) },
  perWorker: { label: 'one process per worker', take: (_left, n, c) => Math.ceil(n / c) },
  perClip: { label: 'one process per clip', take: () => 1 },
};
const CEILING_SCHEDULES = ['batched8', 'rpvBatches', 'perWorker'] as const;

/** Run every plan through ffmpeg alone, `concurrency` processes at a time; seconds. */
async function ffmpegAlone(concurrency: number, schedule: Schedule): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < plans.length) {
        const take = plans.slice(next, next + schedule(plans.length - next, plans.length, concurrency));
        next += take.length;
        await runFfmpeg(
          toDevNull(
            take.length === 1
              ? buildExtractArgs(take[0]!.file, take[0]!.times, { frameSize, fpsModeFlag })
              : buildBatchExtractArgs(take.map((p) => ({ file: p.file, timesSec: p.times })), { frameSize, fpsModeFlag }),
          ),
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

/** Wall and CPU seconds of `fn`. */
async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; cpu: number | null }> {
  const c0 = await cpuSec();
  const value = await fn();
  const c1 = await cpuSec();
  return { value, cpu: c0 !== null && c1 !== null ? c1 - c0 : null };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const msPer = (sec: number) => (1000 * sec) / records.length;

// Warm-up: page cache, ffmpeg binary, JIT.
for (let w = 0; w < 2; w++) {
  for (const s of CEILING_SCHEDULES) await ffmpegAlone(2, SCHEDULES[s]!.take);
  await rpv(2).then(({ out }) => fs.rm(out, { recursive: true, force: true }));
}

interface Samples {
  /** Seconds (and CPU seconds) per schedule of ffmpeg alone, one per round. */
  alone: Record<string, number[]>;
  aloneCpu: Record<string, number[]>;
  mine: number[];
  mineCpu: number[];
  correct: boolean;
}
const fresh = (): Samples => ({ alone: {}, aloneCpu: {}, mine: [], mineCpu: [], correct: true });
const samples: Record<number, Samples> = { 1: fresh(), 2: fresh() };
// Every round measures everything back to back, so a slow drift of the machine (other tenants of
// a shared host) touches rpv and its ceiling alike; the ratios are taken within each round.
for (let r = 0; r < reps; r++) {
  for (const workers of [1, 2]) {
    const m = samples[workers]!;
    for (const name of [...CEILING_SCHEDULES, 'perClip']) {
      const { value: sec, cpu } = await timed(() => ffmpegAlone(workers, SCHEDULES[name]!.take));
      (m.alone[name] ??= []).push(sec);
      if (cpu !== null) (m.aloneCpu[name] ??= []).push(cpu);
    }
    const { value: run, cpu } = await timed(() => rpv(workers));
    if (cpu !== null) m.mineCpu.push(cpu);
    m.mine.push(run.sec);
    m.correct &&= await check(run.out);
    await fs.rm(run.out, { recursive: true, force: true });
  }
}

const cases: Record<string, unknown>[] = [];
const base = {
  bench: 'convert',
  clips: records.length,
  source: `${render.width}x${render.height}@${render.fps}`,
  frameSize,
  reps,
  cpus: os.availableParallelism(),
  loadavg1: Number(os.loadavg()[0]!.toFixed(2)),
  node: process.version,
  ffmpeg: ffmpeg.version,
  ffmpegPath: ffmpeg.path,
  ffmpegSource: ffmpeg.source,
  ffmpegChoice: args.ffmpeg,
  time: new Date().toISOString(),
};
const results: Record<number, { rpvSec: number; ceilSec: number; perClipSec: number }> = {};
const busy: Record<number, number | undefined> = {};
for (const workers of [1, 2]) {
  const m = samples[workers]!;
  const n = records.length;
  // The ceiling is the batched schedule with the lowest median time (not each round's minimum of
  // three noisy figures, which would drift low on a shared machine); ratios are taken within
  // each round against that schedule's run of the same round.
  const ceilName = [...CEILING_SCHEDULES].sort((a, b) => median(m.alone[a]!) - median(m.alone[b]!))[0]!;
  const ceil = m.alone[ceilName]!;
  const perClip = m.alone.perClip!;
  const rpvSec = median(m.mine);
  const ceilSec = median(ceil);
  const perClipSec = median(perClip);
  results[workers] = { rpvSec, ceilSec, perClipSec };
  const ratio = m.mine.map((x, r) => x / ceil[r]!);
  const ratioPerClip = m.mine.map((x, r) => x / perClip[r]!);
  const vsCeiling = median(ratio);
  const vsPerClip = median(ratioPerClip);
  const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
  const cpu = m.mineCpu.length && m.aloneCpu[ceilName]?.length
    ? {
        rpvCpuMsPerVideo: (1000 * median(m.mineCpu)) / n,
        ceilingCpuMsPerVideo: (1000 * median(m.aloneCpu[ceilName]!)) / n,
        rpvCoresBusy: median(m.mineCpu.map((c, r) => c / m.mine[r]!)),
        ceilingCoresBusy: median(m.aloneCpu[ceilName]!.map((c, r) => c / ceil[r]!)),
      }
    : {};
  busy[workers] = cpu.rpvCoresBusy;
  const verdict = `rpv takes ${vsCeiling.toFixed(2)}x ffmpeg alone's time${vsCeiling < 1 ? ' (less than the ceiling: noise, or the ceiling is not the fastest way)' : ''}`;
  console.log(
    `workers ${workers}: rpv ${(n / rpvSec).toFixed(2)} videos/s, ${msPer(rpvSec).toFixed(0)} ms/video | ` +
      `ceiling: ffmpeg alone, ${SCHEDULES[ceilName]!.label}, ${workers} at a time, ${(n / ceilSec).toFixed(2)} videos/s, ${msPer(ceilSec).toFixed(0)} ms/video | ` +
      `${verdict} (median of ${reps} rounds, range ${spread(ratio)}; target <= 1.3x) | correct ${m.correct}`,
  );
  console.log(
    `           ffmpeg alone batched, median ms/video: ${[...CEILING_SCHEDULES].map((s) => `${SCHEDULES[s]!.label} ${msPer(median(m.alone[s]!)).toFixed(0)}`).join(', ')} (the fastest is the ceiling)`,
  );
  console.log(
    `           secondary reference, ffmpeg alone with one process per clip: ${msPer(perClipSec).toFixed(0)} ms/video (rpv/that ${vsPerClip.toFixed(2)}x, range ${spread(ratioPerClip)})`,
  );
  if (cpu.rpvCpuMsPerVideo !== undefined) {
    console.log(
      `           CPU per video (process + ffmpeg/ffprobe children): rpv ${cpu.rpvCpuMsPerVideo.toFixed(0)} ms, ceiling ${cpu.ceilingCpuMsPerVideo!.toFixed(0)} ms ` +
        `(${(cpu.rpvCpuMsPerVideo / cpu.ceilingCpuMsPerVideo!).toFixed(2)}x); cores busy: rpv ${cpu.rpvCoresBusy!.toFixed(2)}, ceiling ${cpu.ceilingCoresBusy!.toFixed(2)}`,
    );
  }
  console.log(`           ffmpeg: ${build}`);
  for (const s of [...CEILING_SCHEDULES, 'perClip']) {
    const sec = median(m.alone[s]!);
    cases.push({
      ...base,
      case: `ffmpeg-${s}-w${workers}`,
      schedule: SCHEDULES[s]!.label,
      workers,
      sec,
      videosPerSec: n / sec,
      msPerVideo: msPer(sec),
      cpuMsPerVideo: m.aloneCpu[s]?.length ? (1000 * median(m.aloneCpu[s]!)) / n : undefined,
    });
  }
  cases.push(
    { ...base, case: `ceiling-ffmpeg-w${workers}`, workers, schedule: SCHEDULES[ceilName]!.label, sec: ceilSec, videosPerSec: n / ceilSec, msPerVideo: msPer(ceilSec), cpuMsPerVideo: cpu.ceilingCpuMsPerVideo, coresBusy: cpu.ceilingCoresBusy },
    {
      ...base,
      case: `rpv-convert-w${workers}`,
      workers,
      sec: rpvSec,
      videosPerSec: n / rpvSec,
      msPerVideo: msPer(rpvSec),
      ceiling: `ffmpeg alone, ${SCHEDULES[ceilName]!.label}`,
      vsCeiling,
      vsCeilingRange: ratio.map((x) => Number(x.toFixed(3))),
      vsPerClip,
      vsPerClipRange: ratioPerClip.map((x) => Number(x.toFixed(3))),
      cpuMsPerVideo: cpu.rpvCpuMsPerVideo,
      coresBusy: cpu.rpvCoresBusy,
      correct: m.correct,
    },
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
    `stages per video (sequential, one process per clip): probe ${stages.probeMs.toFixed(1)} ms, ffmpeg extract to RGB ${stages.extractMs.toFixed(0)} ms, ` +
      `grid encoder ${stages.encodeMs.toFixed(0)} ms; ffmpeg alone one process per clip ${msPer(results[1]!.perClipSec).toFixed(0)} ms, batched ${msPer(results[1]!.ceilSec).toFixed(0)} ms`,
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
    `ffmpeg alone (batched) ${ceilSpeedup.toFixed(2)}x (${base.cpus} cores, shared machine: load ${base.loadavg1})`,
);
cases.push({ ...base, case: 'rpv-convert-workers-speedup', speedup, ceilingSpeedup: ceilSpeedup, speedupBound: bound });
await fs.appendFile(path.join(here, 'results.jsonl'), cases.map((c) => JSON.stringify(c)).join('\n') + '\n');
console.log(`appended ${cases.length} lines to bench/results.jsonl`);
