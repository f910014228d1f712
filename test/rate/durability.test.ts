// `kill -9` of the rating server loses no rating it acknowledged: the real CLI runs in a child
// process, ratings are posted four at a time, and the server is killed while some are in flight.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { exportRatings } from '../../src/index.js';
import { repoRoot, tempDir } from './fixtures.js';

it('keeps every acknowledged rating through kill -9 of the server', async () => {
  const dir = await tempDir('kill');
  const answers = path.join(dir, 'answers.jsonl');
  await fs.writeFile(answers, ['q1', 'q2', 'q3'].map((id) => JSON.stringify({ id, role: 'Pixel', question: `${id}?`, answer: `answer ${id}` })).join('\n'));
  const db = path.join(dir, 'ratings.duckdb');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), 'rate', 'serve', `sys=${answers}`, '--db', db, '--port', '0', '--seed', 's'], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal === 'SIGKILL' ? -9 : code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      output += b.toString();
      const m = /rate: open (http:\/\/\S+\/)/.exec(output);
      if (m) resolve(m[1]!);
    });
    void exited.then(() => reject(new Error(`server exited before it listened:\n${output}`)));
  });

  // Another process cannot open the file while the server holds it, so it exports through the server.
  const early = await exportRatings(db);
  expect([early.rows, early.server?.pid]).toEqual([[], child.pid]);

  const metrics = ['Character Consistency', 'Tone Consistency', 'Human Likeness'];
  const acked: { seq: number; rater: string; item: string; metric: string; score: number }[] = [];
  let sent = 0;
  let killed = false;
  const worker = async (w: number) => {
    for (let i = w; !killed; i += 4) {
      const body = { rater: `r${i % 3}`, item: `q${(i % 3) + 1}`, metric: metrics[i % 3]!, score: (i % 10) + 1 };
      sent++;
      try {
        const res = await fetch(new URL('/api/ratings', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
        const saved = (await res.json()) as { seq: number };
        acked.push({ seq: saved.seq, ...body });
        if (acked.length === 60 && !killed) {
          killed = true;
          child.kill('SIGKILL'); // while the other three requests are in flight
        }
      } catch (err) {
        if (!killed) throw err;
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
  expect(await exited).toBe(-9);
  expect(acked.length).toBeGreaterThanOrEqual(60);

  // Reopening replays DuckDB's log: every acknowledged rating is there, as it was sent.
  const { rows } = await exportRatings(db, { history: true });
  // The server answers each rater's own count (seq 1, 2, ... per rater); the file numbers all ratings.
  const counted = new Map<string, number>();
  const byRaterSeq = new Map(
    rows.map((r) => {
      counted.set(r.rater, (counted.get(r.rater) ?? 0) + 1);
      return [`${r.rater}#${counted.get(r.rater)}`, r];
    }),
  );
  for (const a of acked) {
    expect(byRaterSeq.get(`${a.rater}#${a.seq}`), `rating ${a.rater}#${a.seq}`).toMatchObject({ rater: a.rater, item: a.item, metric: a.metric, score: a.score, system: 'sys', kind: 'score' });
  }
  expect(rows.length).toBeLessThanOrEqual(sent);
  process.stdout.write(`kill -9 after ${acked.length} acknowledged ratings (${sent} sent): ${rows.length} in the database, none lost\n`);
}, 120_000);
