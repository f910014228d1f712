/**
 * All-reduce time through rpv's Gloo addon, 2 ranks on loopback, for the gradient sizes of the
 * bench recipes (float32 values: LoRA + projector; counts printed by `--print-sizes` runs of the
 * trainer are within a few percent of these).
 *
 *   npx tsx bench/allreduce.ts            # spawns 2 ranks, prints one row per size
 *
 * The Open MPI row of src/native/README.md comes from bench/allreduce-mpi.c (same sizes, mpirun).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Collective, distributedEnv } from '../src/train/distributed.js';

const SIZES: Array<[string, number]> = [
  ['tiny', 110_000],
  ['small', 180_000],
  ['qwen0.5b', 8_900_000],
];
const REPS = Number(process.env.REPS ?? 20);

async function rank(): Promise<void> {
  const env = distributedEnv()!;
  const c = await Collective.join(env);
  for (const [name, n] of SIZES) {
    const buf = new Float32Array(n).fill(env.rank + 1);
    for (let i = 0; i < 3; i++) await c.allreduceSum(buf, 'warm-up');
    const times: number[] = [];
    for (let i = 0; i < REPS; i++) {
      const t0 = performance.now();
      await c.allreduceSum(buf, 'bench');
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    if (env.rank === 0) process.stdout.write(`${JSON.stringify({ bench: 'allreduce', library: 'gloo-tcp', ranks: env.worldSize, recipe: name, values: n, bytes: n * 4, median_ms: +times[REPS >> 1]!.toFixed(3), min_ms: +times[0]!.toFixed(3) })}\n`);
  }
  c.leave();
}

if (process.env.WORLD_SIZE) await rank();
else {
  const port = 29_000 + Math.floor(Math.random() * 1000);
  const kids = [0, 1].map((r) =>
    spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      stdio: 'inherit',
      env: { ...process.env, RANK: String(r), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
    }),
  );
  await Promise.all(kids.map((k) => new Promise((r) => k.on('exit', r))));
}
