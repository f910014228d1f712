/**
 * Parquet libraries for shards: `npx tsx bench/parquet-libs.ts [--videos 200] [--reps 3]`
 *
 * Builds (in memory, seeded) `videos` shard rows shaped like Video60k (16 frames x 768-dim
 * features, ~12 dialogues of bilingual text each), then measures after a warm-up, median of reps:
 *   write: parquet-wasm (arrow-rs; ZSTD and Snappy, float16 features) vs parquetjs-lite (float32
 *          features as plain arrays, its only way: no float16, no ZSTD), Arrow IPC for reference;
 *   read:  rpv's reader (parquet-wasm -> Arrow -> rows), hyparquet (+ hyparquet-compressors) and
 *          parquetjs-lite, each on the file it can read, vs a raw read of the same file's bytes
 *          (the ceiling) and rpv's Arrow IPC reader.
 * MB/s are of the data (Arrow IPC size of the rows), so libraries are compared on the same work.
 * Every read is checked against the rows written; parquetjs-lite's bugs are shown (a Float32Array
 * in a repeated field keeps one element; it cannot open arrow-rs files). Appends one JSON line
 * per case to bench/results.jsonl.
 */
import { createRequire } from 'node:module';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { encodeShard } from '../src/shard/write.js';
import { decodeShardRows } from '../src/shard/read.js';
import { float16ToFloat32, float32ToFloat16 } from '../src/util/float16.js';
import type { FeatureSchema, VideoRow } from '../src/shard/schema.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const parquetjs = require('parquetjs-lite') as any;

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({ options: { videos: { type: 'string', default: '200' }, reps: { type: 'string', default: '3' } } });
const VIDEOS = Number(args.videos);
const REPS = Math.max(1, Number(args.reps));
const FRAMES = 16;
const DIM = 768;
const schema: FeatureSchema = { featureDim: DIM, tokensPerFrame: 1, dtype: 'float16' };
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-bench-parquet-'));

// Rows (features already float16-representable, so every format can be compared exactly).
let state = 12345;
const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
const phrases = ['它往左边跑了！🐾', 'What colour is the square?', '是红色的方块喵～', 'It moves to the right, steadily.', '谢谢你 😀'];
const rows: VideoRow[] = Array.from({ length: VIDEOS }, (_, v) => ({
  video_id: `video-${String(v).padStart(5, '0')}`,
  source: `annotations.jsonl:${v + 1}`,
  role: v % 2 ? 'Mia' : '小橘',
  language: v % 2 ? 'en' : 'zh',
  platform: 'douyin',
  profile: '一只住在直播间的橘猫少女，元气满满。',
  summary: null,
  duration_sec: 20,
  num_frames: FRAMES,
  frame_times: Float64Array.from({ length: FRAMES }, (_, i) => (20 * (i + 0.5)) / FRAMES),
  frames: float16ToFloat32(float32ToFloat16(Float32Array.from({ length: FRAMES * DIM }, () => rand() * 4 - 2))),
  dialogues: Array.from({ length: 12 }, (_, d) => ({
    dialogue_id: `d${d}`,
    turns: Array.from({ length: 4 }, (_, t) => ({ speaker: t % 2 ? (v % 2 ? 'Mia' : '小橘') : 'user', text: phrases[(v + d + t) % phrases.length]! })),
  })),
}));
const arrowBytes = encodeShard(rows, { format: 'arrow', schema });
const dataMB = arrowBytes.length / 1e6;
console.log(`${VIDEOS} rows, ${dataMB.toFixed(1)} MB as Arrow IPC (float16 features); ${REPS} reps after a warm-up; load ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} cores`);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
async function time<T>(fn: () => Promise<T> | T): Promise<{ sec: number; value: T }> {
  let value = await fn(); // warm-up
  const secs: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = performance.now();
    value = await fn();
    secs.push((performance.now() - t0) / 1000);
  }
  return { sec: median(secs), value };
}

const cases: Record<string, unknown>[] = [];
const base = { bench: 'parquet-libs', videos: VIDEOS, dataMB: Number(dataMB.toFixed(2)), reps: REPS, cpus: os.availableParallelism(), loadavg1: Number(os.loadavg()[0]!.toFixed(2)), node: process.version, time: new Date().toISOString() };
function report(kind: 'write' | 'read', lib: string, sec: number, extra: Record<string, unknown>, peer?: { name: string; mbps: number }): number {
  const mbps = dataMB / sec;
  console.log(
    `${kind.padEnd(5)} ${lib.padEnd(38)} ${mbps.toFixed(1).padStart(8)} MB/s  ${(sec * 1000).toFixed(0).padStart(7)} ms` +
      (peer ? `   (${(mbps / peer.mbps).toFixed(3)} of ${peer.name})` : '') +
      (extra.correct === undefined ? '' : `   correct ${String(extra.correct)}`) +
      (extra.note ? `   ${String(extra.note)}` : ''),
  );
  cases.push({ ...base, case: `${kind}-${lib}`, kind, lib, sec, mbps, ...extra });
  return mbps;
}

const sameRows = (a: VideoRow[], b: VideoRow[]) => JSON.stringify(a.map(plain)) === JSON.stringify(b.map(plain));
function plain(r: VideoRow) {
  return { ...r, frame_times: Array.from(r.frame_times), frames: Array.from(r.frames) };
}

// ---- write ----
const arrowW = await time(() => encodeShard(rows, { format: 'arrow', schema }));
const arrowMBps = report('write', 'arrow-ipc (apache-arrow)', arrowW.sec, { bytes: arrowW.value.length });
const zstd = await time(() => encodeShard(rows, { format: 'parquet', schema, compression: 'zstd' }));
report('write', 'parquet-wasm zstd', zstd.sec, { bytes: zstd.value.length }, { name: 'arrow-ipc write', mbps: arrowMBps });
const snappy = await time(() => encodeShard(rows, { format: 'parquet', schema, compression: 'snappy' }));
report('write', 'parquet-wasm snappy', snappy.sec, { bytes: snappy.value.length }, { name: 'arrow-ipc write', mbps: arrowMBps });
const wasmFile = path.join(tmp, 'wasm-zstd.parquet');
await fs.writeFile(wasmFile, zstd.value);

const pjSchema = new parquetjs.ParquetSchema({
  video_id: { type: 'UTF8' },
  role: { type: 'UTF8' },
  frame_times: { type: 'DOUBLE', repeated: true },
  frames: { type: 'FLOAT', repeated: true },
  dialogues: { repeated: true, fields: { dialogue_id: { type: 'UTF8' }, turns: { repeated: true, fields: { speaker: { type: 'UTF8' }, text: { type: 'UTF8' } } } } },
});
const pjFile = path.join(tmp, 'parquetjs.parquet');
async function parquetjsWrite(file: string, asTypedArray: boolean, list = rows) {
  const writer = await parquetjs.ParquetWriter.openFile(pjSchema, file);
  for (const r of list) {
    await writer.appendRow({
      video_id: r.video_id,
      role: r.role,
      frame_times: asTypedArray ? r.frame_times : Array.from(r.frame_times),
      frames: asTypedArray ? r.frames : Array.from(r.frames),
      dialogues: r.dialogues,
    });
  }
  await writer.close();
}
// parquetjs-lite is slow: time it on a tenth of the rows (at least 10) and scale.
const pjRows = rows.slice(0, Math.max(10, Math.floor(VIDEOS / 10)));
const pjW = await time(() => parquetjsWrite(pjFile, false, pjRows));
report('write', 'parquetjs-lite (float32 arrays)', (pjW.sec * rows.length) / pjRows.length, { timedRows: pjRows.length, note: `timed on ${pjRows.length} rows, scaled` }, { name: 'parquet-wasm zstd write', mbps: dataMB / zstd.sec });

// ---- read ----
const raw = await time(() => fs.readFile(wasmFile));
const rawMBps = report('read', 'raw file read (ceiling)', raw.sec, { bytes: raw.value.length, note: `${(raw.value.length / 1e6).toFixed(1)} MB file` });
const arrowFile = path.join(tmp, 'rows.arrow');
await fs.writeFile(arrowFile, arrowBytes);
const arrowR = await time(async () => decodeShardRows(await fs.readFile(arrowFile), 'arrow'));
report('read', 'rpv readShard arrow-ipc', arrowR.sec, { correct: sameRows(arrowR.value, rows) }, { name: 'raw read', mbps: rawMBps });
const wasmR = await time(async () => decodeShardRows(await fs.readFile(wasmFile), 'parquet'));
report('read', 'rpv readShard parquet (parquet-wasm)', wasmR.sec, { correct: sameRows(wasmR.value, rows) }, { name: 'raw read', mbps: rawMBps });
const hyR = await time(async () => {
  const bytes = await fs.readFile(wasmFile);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return (await parquetReadObjects({ file: buffer, compressors })) as Record<string, unknown>[];
});
const hyOk =
  hyR.value.length === rows.length &&
  hyR.value.every((o, i) => {
    const frames = o.frames as number[];
    const dialogues = o.dialogues as { turns: { text: string }[] }[];
    return frames.length === rows[i]!.frames.length && frames.every((v, j) => v === rows[i]!.frames[j]) && dialogues[3]!.turns[1]!.text === rows[i]!.dialogues[3]!.turns[1]!.text;
  });
report('read', 'hyparquet + compressors (objects)', hyR.sec, { correct: hyOk, note: 'plain JS arrays per element' }, { name: 'raw read', mbps: rawMBps });
await parquetjsWrite(pjFile, false);
const pjR = await time(async () => {
  const reader = await parquetjs.ParquetReader.openFile(pjFile);
  const cursor = reader.getCursor();
  const out: { video_id: string; frames: number[] }[] = [];
  for (let rec = await cursor.next(); rec; rec = await cursor.next()) out.push(rec);
  await reader.close();
  return out;
});
const pjOk = pjR.value.length === rows.length && pjR.value.every((r, i) => r.frames.length === rows[i]!.frames.length && r.frames.every((v, j) => v === rows[i]!.frames[j]));
report('read', 'parquetjs-lite (its own file)', pjR.sec, { correct: pjOk, note: 'float32 file, larger' }, { name: 'raw read', mbps: rawMBps });

// ---- parquetjs-lite's bugs, shown ----
const bugFile = path.join(tmp, 'typed.parquet');
await parquetjsWrite(bugFile, true, rows.slice(0, 2));
const bugReader = await parquetjs.ParquetReader.openFile(bugFile);
const bugRow = await bugReader.getCursor().next();
await bugReader.close();
const kept = (bugRow.frames as number[]).length;
console.log(`parquetjs-lite bug: a Float32Array of ${rows[0]!.frames.length} values in a repeated field reads back as ${kept} value(s)`);
let foreign = 'opened';
try {
  const r = await parquetjs.ParquetReader.openFile(wasmFile);
  await r.getCursor().next();
  await r.close();
} catch (err) {
  foreign = `fails: ${String(err instanceof Error ? err.message : err).split('\n')[0]}`;
}
console.log(`parquetjs-lite on the arrow-rs (parquet-wasm) file: ${foreign}`);
cases.push({ ...base, case: 'parquetjs-lite-bugs', typedArrayWritten: rows[0]!.frames.length, typedArrayReadBack: kept, readsArrowRsFile: foreign });

await fs.appendFile(path.join(here, 'results.jsonl'), cases.map((c) => JSON.stringify(c)).join('\n') + '\n');
console.log(`appended ${cases.length} lines to bench/results.jsonl`);
await fs.rm(tmp, { recursive: true, force: true });
