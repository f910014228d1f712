/**
 * Storage of `rpv rate`: `npx tsx bench/rate-store.ts [--ratings 300]`
 *
 * The rating server must commit each rating before telling the page it is saved. Per engine, on a
 * fresh file: open time, the latency of one committed rating (its own transaction; median and p95
 * of `--ratings`), whether ratings survive `kill -9` (a child process commits and prints an ack
 * per rating; it is killed after 100 acks; the file is reopened and every acked rating looked
 * for), and the engine's size on disk in node_modules. Engines:
 *   - DuckDB (`@duckdb/node-api`, binaries in npm platform packages): rpv's choice, a dependency;
 *   - SQLite compiled to wasm with a Node file VFS (`node-sqlite3-wasm`), synchronous=FULL;
 *   - better-sqlite3 (native), WAL + synchronous=FULL;
 * the last two only when installed (`npm i --no-save node-sqlite3-wasm better-sqlite3@12`); and,
 * as the floor of any durable write, one JSON line appended and fsynced. Then the real path:
 * POST /api/ratings to rpv's server (HTTP, validation, DuckDB commit) from one client.
 * Appends one JSON line per case to bench/results.jsonl.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, fsyncSync, openSync, promises as fs, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

interface Engine {
  insert(id: number): Promise<void>;
  ids(): Promise<number[]>;
  close(): Promise<void>;
}
type Opener = (file: string) => Promise<Engine>;

const row = (id: number) => ['alice', `item-${id}`, 'Tone Consistency', 'system-a', 'score', 7, null, 'A', new Date().toISOString()] as const;

const engines: Record<string, { packages: string[]; open: Opener }> = {
  duckdb: {
    packages: ['@duckdb/node-api', '@duckdb/node-bindings', `@duckdb/node-bindings-${process.platform}-${process.arch}`],
    open: async (file) => {
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const instance = await DuckDBInstance.create(file);
      const con = await instance.connect();
      await con.run('CREATE TABLE IF NOT EXISTS r (id INTEGER, rater VARCHAR, item VARCHAR, metric VARCHAR, system VARCHAR, kind VARCHAR, score DOUBLE, choice VARCHAR, label VARCHAR, time VARCHAR)');
      return {
        insert: async (id) => void (await con.run('INSERT INTO r VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', [id, ...row(id)])),
        ids: async () => (await con.runAndReadAll('SELECT id FROM r')).getRows().map((r) => Number(r[0])),
        close: async () => {
          con.closeSync();
          instance.closeSync();
        },
      };
    },
  },
  'sqlite-wasm': {
    packages: ['node-sqlite3-wasm'],
    open: async (file) => {
      const { Database } = require('node-sqlite3-wasm');
      const db = new Database(file);
      db.exec('PRAGMA synchronous=FULL');
      db.exec('CREATE TABLE IF NOT EXISTS r (id INTEGER, rater TEXT, item TEXT, metric TEXT, system TEXT, kind TEXT, score REAL, choice TEXT, label TEXT, time TEXT)');
      const st = db.prepare('INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?,?)');
      return {
        insert: async (id) => void st.run([id, ...row(id)]),
        ids: async () => db.all('SELECT id FROM r').map((r: { id: number }) => r.id),
        close: async () => {
          st.finalize();
          db.close();
        },
      };
    },
  },
  'better-sqlite3': {
    packages: ['better-sqlite3'],
    open: async (file) => {
      const Database = require('better-sqlite3');
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('CREATE TABLE IF NOT EXISTS r (id INTEGER, rater TEXT, item TEXT, metric TEXT, system TEXT, kind TEXT, score REAL, choice TEXT, label TEXT, time TEXT)');
      const st = db.prepare('INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?,?)');
      return { insert: async (id) => void st.run(id, ...row(id)), ids: async () => db.prepare('SELECT id FROM r').all().map((r: { id: number }) => r.id), close: async () => db.close() };
    },
  },
  'jsonl+fsync': {
    packages: [],
    open: async (file) => {
      const fd = openSync(file, 'a');
      return {
        insert: async (id) => {
          writeSync(fd, `${JSON.stringify([id, ...row(id)])}\n`);
          fsyncSync(fd);
        },
        ids: async () =>
          readFileSync(file, 'utf8')
            .split('\n')
            .flatMap((l) => {
              try {
                return [JSON.parse(l)[0] as number];
              } catch {
                return [];
              }
            }),
        close: async () => closeSync(fd),
      };
    },
  },
};

const { values: args } = parseArgs({ options: { ratings: { type: 'string', default: '300' }, child: { type: 'string' }, file: { type: 'string' } } });

if (args.child) {
  // Child of the kill -9 check: commit forever, one ack line per committed rating.
  const engine = await engines[args.child]!.open(args.file!);
  for (let i = 0; ; i++) {
    await engine.insert(i);
    process.stdout.write(`ack ${i}\n`);
  }
}

function available(name: string): boolean {
  try {
    for (const p of engines[name]!.packages.slice(0, 1)) require.resolve(p);
    return true;
  } catch {
    return false;
  }
}

async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await diskBytes(p);
    else if (entry.isFile()) total += (await fs.stat(p)).size;
  }
  return total;
}

const pct = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;

async function killCheck(name: string, file: string): Promise<{ acked: number; lost: number | null; reopen: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', name, '--file', file], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  const acked = new Set<number>();
  let buffer = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (b: Buffer) => {
      buffer += b.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const l of lines) acked.add(Number(l.split(' ')[1]));
      if (acked.size >= 100 && !child.killed) {
        child.kill('SIGKILL');
        resolve();
      }
    });
  });
  await new Promise((r) => child.on('exit', r));
  try {
    const engine = await engines[name]!.open(file);
    const ids = new Set(await engine.ids());
    await engine.close();
    return { acked: acked.size, lost: [...acked].filter((i) => !ids.has(i)).length, reopen: 'ok' };
  } catch (err) {
    return { acked: acked.size, lost: null, reopen: (err as Error).message };
  }
}

const N = Number(args.ratings);
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-bench-rate-'));
const meta = { bench: 'rate-store', ratings: N, cpus: os.cpus().length, loadavg1: Number(os.loadavg()[0]!.toFixed(2)), node: process.version, time: new Date().toISOString() };
const results: Record<string, unknown>[] = [];
for (const name of Object.keys(engines)) {
  if (!available(name)) {
    console.log(`${name.padEnd(15)} not installed (npm i --no-save ${engines[name]!.packages[0]})`);
    continue;
  }
  const file = path.join(tmp, `${name}.db`);
  const t0 = performance.now();
  const engine = await engines[name]!.open(file);
  const openMs = performance.now() - t0;
  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const a = performance.now();
    await engine.insert(i);
    times.push(performance.now() - a);
  }
  const stored = (await engine.ids()).length;
  await engine.close();
  times.sort((a, b) => a - b);
  const kill = await killCheck(name, path.join(tmp, `${name}-kill.db`));
  let installBytes = 0;
  for (const p of engines[name]!.packages) installBytes += await diskBytes(path.join(root, 'node_modules', p));
  const result = { ...meta, case: name, openMs: Math.round(openMs), commitMedianMs: Number(pct(times, 0.5).toFixed(2)), commitP95Ms: Number(pct(times, 0.95).toFixed(2)), stored, killAcked: kill.acked, killLost: kill.lost, killReopen: kill.reopen, installMB: Number((installBytes / 1e6).toFixed(1)) };
  results.push(result);
  console.log(
    `${name.padEnd(15)} open ${String(result.openMs).padStart(5)} ms   commit median ${result.commitMedianMs.toFixed(2).padStart(6)} ms  p95 ${result.commitP95Ms.toFixed(2).padStart(6)} ms   ` +
      `kill -9 after ${kill.acked} acks: ${kill.lost === null ? `reopen failed: ${kill.reopen}` : `${kill.lost} lost`}   install ${result.installMB} MB`,
  );
}

// The real path: one client posting ratings to rpv's server, each acknowledged after its commit.
{
  const { serveRatings } = await import('../src/rate/serve.js');
  const answers = path.join(tmp, 'answers.jsonl');
  await fs.writeFile(answers, Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: `q${i}`, role: 'Pixel', question: `q${i}?`, answer: `a${i}` })).join('\n'));
  const service = await serveRatings({ answers: [{ system: 'sys', file: answers }], db: path.join(tmp, 'server.duckdb'), port: 0, seed: 'bench' });
  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const a = performance.now();
    const res = await fetch(new URL('/api/ratings', service.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rater: 'alice', item: `q${i % 50}`, metric: 'Tone Consistency', score: (i % 10) + 1 }) });
    if (res.status !== 200) throw new Error(await res.text());
    await res.json();
    times.push(performance.now() - a);
  }
  const stored = (await service.session.store.history()).length;
  await service.close();
  times.sort((a, b) => a - b);
  const result = { ...meta, case: 'rpv-server-post', commitMedianMs: Number(pct(times, 0.5).toFixed(2)), commitP95Ms: Number(pct(times, 0.95).toFixed(2)), stored };
  results.push(result);
  console.log(`${'rpv POST'.padEnd(15)} ${N} ratings over HTTP, each acked after its commit: median ${result.commitMedianMs.toFixed(2)} ms  p95 ${result.commitP95Ms.toFixed(2)} ms (stored ${stored})`);
}
appendFileSync(path.join(here, 'results.jsonl'), results.map((r) => `${JSON.stringify(r)}\n`).join(''));
console.log(`load average ${meta.loadavg1} on ${meta.cpus} cores; appended ${results.length} lines to bench/results.jsonl`);
await fs.rm(tmp, { recursive: true, force: true });
