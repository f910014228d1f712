/**
 * Data-parallel training across processes, launched as PyTorch jobs are: the torchrun environment
 * (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; Open MPI's
 * `OMPI_COMM_WORLD_*` and Slurm's `SLURM_PROCID` / `SLURM_NTASKS` when those are absent).
 *
 * The collectives are Gloo's (src/native/collective.cc, the `rpv_collective` addon, built only
 * where libgloo-dev is installed). Rank 0 serves the rendezvous key-value store at
 * `MASTER_ADDR:MASTER_PORT` (Debian's Gloo has no TCP store); every rank keeps its store
 * connection open, so after a failed collective rank 0's store says which rank was lost.
 */
import net from 'node:net';
import os from 'node:os';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { errorMessage, RpvError } from '../util/errors.js';

/** Seconds a rendezvous or a collective may wait before the job stops (RPV_DIST_TIMEOUT_SEC). */
export const DEFAULT_TIMEOUT_SEC = 60;

export interface DistributedEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Seconds a rendezvous or a collective waits at most. */
  timeoutSec: number;
}

interface CollectiveAddon {
  join(rank: number, size: number, host: string, port: number, timeoutMs: number, localHost: string): Promise<void>;
  allreduceSum(values: Float32Array | Float64Array): void;
  leave(): void;
}

const envInt = (env: NodeJS.ProcessEnv, ...names: string[]): { name: string; value: number } | null => {
  for (const name of names) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0) throw new RpvError(`train: environment ${name}=${raw}: expected a non-negative integer`);
    return { name, value };
  }
  return null;
};

/**
 * The job's ranks from the environment; null for a single process (no WORLD_SIZE, or 1).
 * Errors name the variable: a rank outside [0, WORLD_SIZE), a missing MASTER_ADDR or MASTER_PORT.
 */
export function distributedEnv(env: NodeJS.ProcessEnv = process.env): DistributedEnv | null {
  const world = envInt(env, 'WORLD_SIZE', 'OMPI_COMM_WORLD_SIZE', 'SLURM_NTASKS');
  if (!world || world.value <= 1) return null;
  const rank = envInt(env, 'RANK', 'OMPI_COMM_WORLD_RANK', 'SLURM_PROCID');
  if (!rank) throw new RpvError(`train: ${world.name}=${world.value} but no RANK: set RANK (0 to ${world.value - 1}) for each process`);
  if (rank.value >= world.value) throw new RpvError(`train: ${rank.name}=${rank.value} is not below ${world.name}=${world.value}`);
  const localRank = envInt(env, 'LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK', 'SLURM_LOCALID')?.value ?? rank.value;
  const localWorldSize = envInt(env, 'LOCAL_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_SIZE', 'SLURM_NTASKS_PER_NODE')?.value ?? world.value;
  const masterAddr = env.MASTER_ADDR;
  if (!masterAddr) throw new RpvError(`train: ${world.name}=${world.value} but MASTER_ADDR is not set: set it to rank 0's host name or address`);
  const port = envInt(env, 'MASTER_PORT');
  if (!port || port.value < 1 || port.value > 65535) throw new RpvError(`train: ${world.name}=${world.value} but MASTER_PORT is ${env.MASTER_PORT === undefined ? 'not set' : `${env.MASTER_PORT}, not a port`}: set it to a free TCP port on rank 0's host`);
  const timeout = env.RPV_DIST_TIMEOUT_SEC ? Number(env.RPV_DIST_TIMEOUT_SEC) : DEFAULT_TIMEOUT_SEC;
  if (!(timeout > 0)) throw new RpvError(`train: RPV_DIST_TIMEOUT_SEC=${env.RPV_DIST_TIMEOUT_SEC}: expected a positive number of seconds`);
  return { rank: rank.value, worldSize: world.value, localRank, localWorldSize, masterAddr, masterPort: port.value, timeoutSec: timeout };
}

/** The world size `rpv train` will run with (1 without a distributed environment). */
export function trainWorldSize(): number {
  return distributedEnv()?.worldSize ?? 1;
}

/** What `rpv env` says: whether `rpv train --nproc N` / WORLD_SIZE > 1 can run here, and why not. */
export function describeDistributed(): { available: boolean; library: string | null; reason: string | null; environment: string } {
  const { addon, reason } = loadCollective();
  let environment: string;
  try {
    const env = distributedEnv();
    environment = env ? `rank ${env.rank} of ${env.worldSize}, store ${env.masterAddr}:${env.masterPort}` : 'single process (no WORLD_SIZE > 1)';
  } catch (err) {
    environment = errorMessage(err);
  }
  return addon ? { available: true, library: reason, reason: null, environment } : { available: false, library: null, reason, environment };
}

let loaded: { addon: CollectiveAddon | null; reason: string } | null = null;

/** The Gloo addon, or why the distributed route is not available. Never throws. */
export function loadCollective(): { addon: CollectiveAddon | null; reason: string } {
  if (loaded) return loaded;
  const here = path(fileURLToPath(import.meta.url));
  const candidates = [`${here}/../../build/Release/rpv_collective.node`, `${here}/../../../build/Release/rpv_collective.node`];
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    const gloo = existsSync('/usr/include/gloo/rendezvous/store.h');
    loaded = { addon: null, reason: gloo ? 'build/Release/rpv_collective.node is missing: rebuild with `node src/native/build.mjs`' : 'Gloo is not installed (Debian/Ubuntu: apt-get install libgloo-dev, then `node src/native/build.mjs`)' };
    return loaded;
  }
  try {
    loaded = { addon: createRequire(import.meta.url)(file) as CollectiveAddon, reason: `Gloo (TCP), ${file.replace(/.*\/build\//, 'build/')}` };
  } catch (err) {
    loaded = { addon: null, reason: `${file} does not load: ${errorMessage(err).split('\n')[0]}` };
  }
  return loaded;
}

function path(file: string): string {
  return file.slice(0, file.lastIndexOf('/'));
}

/** Rank 0's rendezvous store: keys set once, read by every rank; which ranks' connections closed. */
class StoreServer {
  private readonly values = new Map<string, Buffer>();
  private readonly waiters: Array<() => boolean> = [];
  private readonly lost = new Set<number>();
  private constructor(private readonly server: net.Server) {}

  static listen(host: string, port: number): Promise<StoreServer> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      const store = new StoreServer(server);
      server.on('connection', (socket) => store.serve(socket));
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new RpvError(`train: rank 0 cannot serve the rendezvous store at ${host}:${port} (MASTER_ADDR:MASTER_PORT): ${err.code ?? errorMessage(err)}; choose a free MASTER_PORT`)),
      );
      // Listen on every interface: MASTER_ADDR is the name the other ranks reach this host by.
      server.listen(port, () => resolve(store));
    });
  }

  lostRanks(): number[] {
    return [...this.lost].sort((a, b) => a - b);
  }

  close(): void {
    this.server.close();
  }

  private serve(socket: net.Socket): void {
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let rank = -1;
    let busy = false;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (rank >= 0) this.lost.add(rank);
    });
    const str = (at: number): [Buffer, number] | null => {
      if (buf.length < at + 4) return null;
      const n = buf.readUInt32LE(at);
      if (buf.length < at + 4 + n) return null;
      return [buf.subarray(at + 4, at + 4 + n), at + 4 + n];
    };
    const step = () => {
      while (!busy && buf.length > 0) {
        const op = String.fromCharCode(buf[0]!);
        if (op === 'H') {
          if (buf.length < 5) return;
          rank = buf.readUInt32LE(1);
          buf = buf.subarray(5);
        } else if (op === 'L') {
          // Which ranks' connections closed (asked by a rank whose collective failed).
          buf = buf.subarray(1);
          const v = Buffer.from(JSON.stringify(this.lostRanks()));
          const len = Buffer.alloc(4);
          len.writeUInt32LE(v.length);
          socket.write(Buffer.concat([len, v]));
        } else if (op === 'S') {
          const k = str(1);
          if (!k) return;
          const v = str(k[1]);
          if (!v) return;
          this.values.set(k[0].toString(), Buffer.from(v[0]));
          buf = buf.subarray(v[1]);
          socket.write(Buffer.from([1]));
          this.wake();
        } else if (op === 'G' || op === 'W') {
          const keys: string[] = [];
          let at = 1;
          let count = 1;
          if (op === 'W') {
            if (buf.length < 5) return;
            count = buf.readUInt32LE(1);
            at = 5;
          }
          for (let i = 0; i < count; i++) {
            const k = str(at);
            if (!k) return;
            keys.push(k[0].toString());
            at = k[1];
          }
          buf = buf.subarray(at);
          busy = true;
          const answer = () => {
            if (!keys.every((k) => this.values.has(k))) return false;
            if (op === 'G') {
              const v = this.values.get(keys[0]!)!;
              const len = Buffer.alloc(4);
              len.writeUInt32LE(v.length);
              socket.write(Buffer.concat([len, v]));
            } else socket.write(Buffer.from([1]));
            busy = false;
            setImmediate(step);
            return true;
          };
          if (!answer()) this.waiters.push(answer);
        } else {
          socket.destroy();
          return;
        }
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      step();
    });
  }

  private wake(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) if (this.waiters[i]!()) this.waiters.splice(i, 1);
  }
}

/** Asks rank 0's store which ranks' connections closed; null when the store cannot be reached. */
function askLostRanks(host: string, port: number): Promise<number[] | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(null);
    }, 2000);
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(null);
    });
    socket.once('connect', () => {
      socket.write('L');
    });
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32LE(0)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(JSON.parse(buf.subarray(4, 4 + buf.readUInt32LE(0)).toString()) as number[]);
      }
    });
  });
}

/** One process's membership of the job: sums across ranks, and says which rank was lost. */
export class Collective {
  private constructor(
    readonly env: DistributedEnv,
    private readonly addon: CollectiveAddon,
    private readonly store: StoreServer | null,
  ) {}

  get rank(): number {
    return this.env.rank;
  }
  get worldSize(): number {
    return this.env.worldSize;
  }

  /** Joins the job: rank 0 serves the store, every rank connects; fails naming MASTER_ADDR:MASTER_PORT. */
  static async join(env: DistributedEnv): Promise<Collective> {
    const { addon, reason } = loadCollective();
    if (!addon) throw new RpvError(`train: WORLD_SIZE=${env.worldSize} asks for distributed training, but the distributed route is not available: ${reason}`);
    const store = env.rank === 0 ? await StoreServer.listen(env.masterAddr, env.masterPort) : null;
    const where = `${env.masterAddr}:${env.masterPort}`;
    // Gloo's pairs listen on this host's address as the others reach it: loopback for a local job.
    const local = isLoopback(env.masterAddr) ? '127.0.0.1' : (process.env.RPV_DIST_HOST ?? os.hostname());
    try {
      await addon.join(env.rank, env.worldSize, env.masterAddr, env.masterPort, Math.round(env.timeoutSec * 1000), local);
    } catch (err) {
      store?.close();
      const msg = errorMessage(err);
      throw new RpvError(`train: rank ${env.rank}: ${msg.includes(where) ? msg : `rendezvous at ${where} (MASTER_ADDR:MASTER_PORT): ${msg}`}`);
    }
    return new Collective(env, addon, store);
  }

  /** Sums `values` over every rank, in place. A lost rank throws, naming it. */
  async allreduceSum(values: Float32Array | Float64Array, what: string): Promise<void> {
    try {
      this.addon.allreduceSum(values);
    } catch (err) {
      throw new RpvError(`train: rank ${this.rank}: ${what}: ${await this.describeLoss()} (${errorMessage(err)}); the last checkpoint is intact: resume with the ranks left`);
    }
  }

  /** Which rank was lost, as rank 0's store saw its connection close. */
  private async describeLoss(): Promise<string> {
    let lost: number[] | null = null;
    if (this.store) {
      // The closed connection may not have been read yet: give the event loop a moment.
      for (let i = 0; i < 20 && this.store.lostRanks().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      lost = this.store.lostRanks();
    } else {
      for (let i = 0; i < 10; i++) {
        lost = await askLostRanks(this.env.masterAddr, this.env.masterPort);
        if (lost === null || lost.length > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (lost === null) return 'lost rank 0 (its store no longer answers)';
    if (lost.length === 0) return `a collective failed or timed out after ${this.env.timeoutSec} s (RPV_DIST_TIMEOUT_SEC) with every rank still connected`;
    return `lost rank ${lost.join(', rank ')}`;
  }

  leave(): void {
    this.addon.leave();
    this.store?.close();
  }
}

const isLoopback = (host: string) => host === 'localhost' || host.startsWith('127.') || host === '::1';

/** A free TCP port on loopback, for a local job's MASTER_PORT. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** `argv` without `--nproc N` / `--nproc=N`. */
export function withoutNproc(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--nproc') i++;
    else if (!argv[i]!.startsWith('--nproc=')) out.push(argv[i]!);
  }
  return out;
}

/**
 * `rpv train --nproc N`: N local ranks, as `torchrun --nproc_per_node N` starts them (the same
 * command with the torchrun environment), the CPUs split between them (RPV_MATMUL_THREADS, unless
 * set; a recipe's model.threads wins). A rank that fails or is killed stops the others (SIGTERM,
 * then SIGKILL after the timeout), naming it. Resolves to the exit code.
 */
export async function launchLocalRanks(nproc: number, argv: string[], log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<number> {
  const { spawn } = await import('node:child_process');
  const port = process.env.MASTER_PORT ? Number(process.env.MASTER_PORT) : await freePort();
  const threads = Math.max(1, Math.floor(os.availableParallelism() / nproc));
  const args = [...process.execArgv, ...withoutNproc(argv)];
  log(`train: ${nproc} local ranks at 127.0.0.1:${port}, ${process.env.RPV_MATMUL_THREADS ?? threads} kernel thread(s) each`);
  const children = Array.from({ length: nproc }, (_, rank) => {
    const child = spawn(process.execPath, rank === 0 ? args : [...args, '--no-progress'], {
      stdio: rank === 0 ? 'inherit' : ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(nproc),
        LOCAL_RANK: String(rank),
        LOCAL_WORLD_SIZE: String(nproc),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        RPV_MATMUL_THREADS: process.env.RPV_MATMUL_THREADS ?? String(threads),
      },
    });
    // Ranks other than 0 speak with their rank in front of each line.
    for (const stream of [child.stdout, child.stderr]) {
      let rest = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (d: string) => {
        const lines = (rest + d).split('\n');
        rest = lines.pop()!;
        for (const l of lines) if (l.trim()) process.stderr.write(`[rank ${rank}] ${l}\n`);
      });
    }
    return child;
  });
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of children) if (c.exitCode === null) c.kill(signal);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  let code = 0;
  let failed = false;
  const timeoutSec = process.env.RPV_DIST_TIMEOUT_SEC ? Number(process.env.RPV_DIST_TIMEOUT_SEC) : DEFAULT_TIMEOUT_SEC;
  await Promise.all(
    children.map(
      (child, rank) =>
        new Promise<void>((resolve) => {
          child.on('exit', (status, signal) => {
            if ((status !== 0 || signal) && !failed) {
              failed = true;
              code = status ?? 128 + (os.constants.signals[signal!] ?? 0);
              log(`train: rank ${rank} (pid ${child.pid}) ${signal ? `was ended by ${signal}` : `exited with code ${status}`}; stopping the other ranks`);
              for (const other of children) if (other !== child && other.exitCode === null) other.kill('SIGTERM');
              const kill = setTimeout(() => {
                for (const other of children) if (other.exitCode === null && other.signalCode === null) other.kill('SIGKILL');
              }, timeoutSec * 1000);
              kill.unref();
            }
            resolve();
          });
        }),
    ),
  );
  for (const [s, h] of handlers) process.off(s, h);
  return code;
}
