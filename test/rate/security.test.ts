// What a web page the rater has open, a DNS name turned into 127.0.0.1, another user of the machine
// or a rater's own name can do to `rpv rate serve`: real HTTP requests, headers set as browsers set
// them (the page-level attack in Chromium is in browser.test.ts).
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportRatings, serveRatings, type RatingsService } from '../../src/index.js';
import { formatRatingsCsv, readRatingsCsv } from '../../src/rate/index.js';
import { SYSTEM_A, makeRateFixture, repoRoot, tempDir, type RateFixture } from './fixtures.js';

let fx: RateFixture;
let open: RatingsService;
let named: RatingsService;
let openDb: string;
const logged: string[] = [];

interface Reply {
  status: number;
  text: string;
  json: any;
}

/** A request with exactly these headers (node:http lets a test set Host, as a rebound DNS name would). */
function send(service: RatingsService, method: string, route: string, headers: Record<string, string> = {}, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: service.server.port, method, path: route, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode!, text, json });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
  });
}

const JSON_TYPE = { 'content-type': 'application/json' };
const rating = (rater: string, item = 's4', score = 5) => ({ rater, item, metric: 'Tone Consistency', score });
const ratersIn = async (service: RatingsService) => new Set((await service.session.store.history()).map((r) => r.rater));

beforeAll(async () => {
  fx = await makeRateFixture();
  // s1: a regular file named `..x.mp4`; s2: a missing video whose video_id the shards have;
  // s3: a missing video without a video_id; s4: a video that is there.
  await fs.copyFile(path.join(fx.exportDir, 'videos/clip-1.mp4'), path.join(fx.exportDir, '..x.mp4'));
  const answers = path.join(fx.root, 'security.jsonl');
  const items = [
    { id: 's1', role: 'Pixel', video: '..x.mp4', question: 'Dots?', answer: 'Two.' },
    { id: 's2', role: 'Pixel', video: 'videos/gone.mp4', video_id: 'clip-9', question: 'Gone?', answer: 'Frames.' },
    { id: 's3', role: 'Pixel', video: 'videos/gone-too.mp4', question: 'Also gone?', answer: 'Nothing.' },
    { id: 's4', role: 'Pixel', video: 'videos/clip-1.mp4', question: 'Colour?', answer: 'Red.' },
  ];
  await fs.writeFile(answers, `${items.map((i) => JSON.stringify(i)).join('\n')}\n`);
  openDb = path.join(await tempDir('sec'), 'open.duckdb');
  const common = { answers: [{ system: SYSTEM_A, file: answers }], mediaRoot: fx.exportDir, shards: fx.shards, seed: 's', port: 0, log: (line: string) => logged.push(line) };
  open = await serveRatings({ ...common, db: openDb });
  named = await serveRatings({ ...common, db: path.join(await tempDir('sec'), 'named.duckdb'), raters: ['alice', 'bob'], allowHosts: ['rate.lab.example'] });
}, 120_000);

afterAll(async () => {
  await open?.close();
  await named?.close();
});

describe('rpv rate serve: requests that do not come from its own page', () => {
  it('takes ratings only as application/json (a no-cors fetch or a form sends text/plain, a form or multipart)', async () => {
    const types = ['text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'];
    for (const type of types) {
      const res = await send(open, 'POST', '/api/ratings', { 'content-type': type }, rating('mallory'));
      expect([res.status, res.json]).toEqual([415, { error: `ratings are taken only as application/json, not ${type}: the rating page sends them so, a form or a page of another site cannot` }]);
    }
    const bare = await send(open, 'POST', '/api/ratings', {}, rating('mallory'));
    expect([bare.status, bare.json]).toEqual([
      415,
      { error: 'ratings are taken only as application/json, not a body without content-type: the rating page sends them so, a form or a page of another site cannot' },
    ]);
    expect(await ratersIn(open)).not.toContain('mallory');
    const ok = await send(open, 'POST', '/api/ratings', { 'content-type': 'application/json; charset=utf-8' }, rating('olga'));
    expect([ok.status, ok.json.saved]).toEqual([200, true]);
  });

  it('answers only requests for its own host: Host: evil.example (DNS rebinding) gets 421 and no data', async () => {
    await send(open, 'POST', '/api/ratings', JSON_TYPE, rating('alice', 's4', 8));
    const port = open.server.port;
    const refused = (host: string) => ({ error: `host '${host}' is not this server's address: open the link \`rpv rate serve\` printed (another name for this server needs --allow-host)` });
    for (const [method, route] of [['GET', '/api/progress?rater=alice'], ['GET', '/api/item?rater=alice&item=s4'], ['GET', '/'], ['GET', '/api/config'], ['GET', '/api/media?item=s4']]) {
      const res = await send(open, method!, route!, { host: `evil.example:${port}` });
      expect([route, res.status, res.json]).toEqual([route, 421, refused(`evil.example:${port}`)]);
    }
    const write = await send(open, 'POST', '/api/ratings', { host: 'evil.example', ...JSON_TYPE }, rating('mallory'));
    expect([write.status, write.json]).toEqual([421, refused('evil.example')]);
    const otherPort = await send(open, 'GET', '/api/config', { host: `127.0.0.1:${port + 1}` });
    expect(otherPort.status).toBe(421);
    expect(await ratersIn(open)).not.toContain('mallory');
    // Its own names: the address it printed and localhost.
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
      const res = await send(open, 'GET', '/api/progress?rater=alice', { host });
      expect([host, res.status, res.json.done]).toEqual([host, 200, 0]);
    }
    // A name given with --allow-host (a DNS name of the machine, a proxy's).
    expect((await send(named, 'GET', '/api/config', { host: `rate.lab.example:${named.server.port}` })).status).toBe(200);
    expect((await send(open, 'GET', '/api/config', { host: `rate.lab.example:${port}` })).status).toBe(421);
  });

  it("refuses another Origin and the browser's cross-site requests, and lets its own page through", async () => {
    const port = open.server.port;
    const cases: [string, string, Record<string, string>, number, string | null][] = [
      ['POST', '/api/ratings', { origin: 'http://evil.example', ...JSON_TYPE }, 403, "cross-origin request from http://evil.example refused: only this server's own rating page may send it"],
      ['POST', '/api/ratings', { origin: 'null', ...JSON_TYPE }, 403, "cross-origin request from null refused: only this server's own rating page may send it"],
      ['POST', '/api/ratings', { origin: `http://localhost:${port}`, ...JSON_TYPE }, 403, `cross-origin request from http://localhost:${port} refused: only this server's own rating page may send it`],
      ['GET', '/api/progress?rater=alice', { origin: `http://127.0.0.1:${port + 1}` }, 403, `cross-origin request from http://127.0.0.1:${port + 1} refused: only this server's own rating page may send it`],
      ['GET', '/api/progress?rater=alice', { 'sec-fetch-site': 'cross-site' }, 403, "cross-site request refused: only this server's own rating page may call its API"],
      ['GET', '/api/media?item=s4', { 'sec-fetch-site': 'same-site' }, 403, "same-site request refused: only this server's own rating page may call its API"],
      ['POST', '/api/ratings', { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin', ...JSON_TYPE }, 200, null],
      ['GET', '/api/progress?rater=alice', { 'sec-fetch-site': 'same-origin' }, 200, null],
      // A link to the page from elsewhere still opens it.
      ['GET', '/', { 'sec-fetch-site': 'cross-site' }, 200, null],
    ];
    for (const [method, route, headers, status, error] of cases) {
      const res = await send(open, method, route, headers, method === 'POST' ? rating(status === 200 ? 'olga' : 'mallory') : undefined);
      expect([method, route, headers, res.status, error === null ? null : res.json]).toEqual([method, route, headers, status, error === null ? null : { error }]);
    }
    expect(await ratersIn(open)).not.toContain('mallory');
  });

  it('needs tokens on loopback too once raters are named: no token, no read or write of their ratings', async () => {
    expect(named.requireTokens).toBe(true);
    expect((await send(named, 'GET', '/api/config')).json.tokens).toBe(true);
    const needed = { error: 'this server needs a rater token: open the link `rpv rate serve` printed for you' };
    for (const route of ['/api/progress?rater=alice', '/api/item?rater=alice&item=s4', '/api/media?item=s4', '/api/frames?item=s2']) {
      const res = await send(named, 'GET', route);
      expect([route, res.status, res.json]).toEqual([route, 401, needed]);
    }
    const write = await send(named, 'POST', '/api/ratings', JSON_TYPE, rating('alice'));
    expect([write.status, write.json]).toEqual([401, needed]);
    expect((await named.session.store.history()).length).toBe(0);
    const token = new URL(named.raterLinks.find((r) => r.name === 'alice')!.url).searchParams.get('token')!;
    const mine = await send(named, 'POST', '/api/ratings', { authorization: `Bearer ${token}`, ...JSON_TYPE }, rating('alice'));
    expect([mine.status, mine.json.saved]).toEqual([200, true]);
    // The export route is not a rater's.
    const asRater = await send(named, 'GET', '/api/export', { authorization: `Bearer ${token}` });
    expect([asRater.status, asRater.json]).toEqual([403, { error: "export: only `rpv rate export` on the server's machine may export (with the token the server keeps beside its database)" }]);
  });
});

describe('rpv rate serve: what raters send and are sent', () => {
  it('refuses control, bidirectional and zero-width characters in rater names, saying which and why', async () => {
    const bidi = 'they reorder how the name and the text around it are shown';
    const zero = 'two names that look the same would be different raters';
    const cases: [string, string][] = [
      ['ali\u202Ece', `rater: bidirectional controls are not allowed in names (U+202E at character 4): ${bidi}`],
      ['\u202Aabc', `rater: bidirectional controls are not allowed in names (U+202A at character 1): ${bidi}`],
      ['x\u2066y\u2069', `rater: bidirectional controls are not allowed in names (U+2066 at character 2): ${bidi}`],
      ['a\u200Fb', `rater: bidirectional controls are not allowed in names (U+200F at character 2): ${bidi}`],
      ['a\u061Cb', `rater: bidirectional controls are not allowed in names (U+061C at character 2): ${bidi}`],
      ['bo\u200Bb', `rater: zero-width characters are not allowed in names (U+200B at character 3): ${zero}`],
      ['bob\u2060', `rater: zero-width characters are not allowed in names (U+2060 at character 4): ${zero}`],
      ['\uFEFFbob', `rater: zero-width characters are not allowed in names (U+FEFF at character 1): ${zero}`],
      ['a\u0085b', 'rater: control characters are not allowed in names (U+0085 at character 2): they break the lines and files the name is written to'],
    ];
    for (const [name, error] of cases) {
      const res = await send(open, 'POST', '/api/ratings', JSON_TYPE, rating(name));
      expect([JSON.stringify(name), res.status, res.json]).toEqual([JSON.stringify(name), 400, { error }]);
    }
    await expect(serveRatings({ answers: [{ system: SYSTEM_A, file: fx.answersA }], db: path.join(await tempDir('sec'), 'n.duckdb'), raters: ['bo\u202Eb'], port: 0 })).rejects.toThrow(
      `rate: --raters 'bo<U+202E>b': rater: bidirectional controls are not allowed in names (U+202E at character 3): ${bidi}`,
    );
  });

  it('counts seq per rater: a response never tells how many ratings others gave', async () => {
    const seqs: [string, number][] = [];
    for (const rater of ['pia', 'quinn', 'quinn', 'quinn', 'pia']) {
      const res = await send(open, 'POST', '/api/ratings', JSON_TYPE, rating(rater));
      seqs.push([rater, res.json.seq]);
    }
    expect(seqs).toEqual([
      ['pia', 1],
      ['quinn', 1],
      ['quinn', 2],
      ['quinn', 3],
      ['pia', 2],
    ]);
  });

  it('writes CSV cells a spreadsheet would run as formulas with a quote first, and reads them back as they were', async () => {
    const names = ['=cmd|calc!A1', '+SUM(1)', '-2+3', '@A1', "'=x"];
    for (const name of names) expect((await send(open, 'POST', '/api/ratings', JSON_TYPE, rating(name))).status).toBe(200);
    const { rows } = await exportRatings(openDb);
    const csv = formatRatingsCsv(rows.filter((r) => names.includes(r.rater)));
    expect(csv.split('\n').slice(1, -1).map((l) => l.split(',')[0])).toEqual(["'=cmd|calc!A1", "'+SUM(1)", "'-2+3", "'@A1", "''=x"]);
    // Tab and carriage return cannot be in a name, but other columns come from other files.
    const odd = formatRatingsCsv([{ rater: 'r', item: '\tx', metric: '\rm', score: 3, system: '=s', time: 't', kind: 'score' }]);
    expect(odd).toBe(`rater,item,metric,score,system,time,kind\nr,'\tx,"'\rm",3,'=s,t,score\n`);
    const file = path.join(await tempDir('sec'), 'r.csv');
    await fs.writeFile(file, csv);
    expect((await readRatingsCsv(file)).map((r) => r.rater)).toEqual(names);
  });

  it('serves a regular file named ..x.mp4, and tells the rater no path of the server', async () => {
    const res = await fetch(new URL('/api/media?item=s1', open.url));
    expect([res.status, res.headers.get('content-type')]).toEqual([200, 'video/mp4']);
    const gone = await send(open, 'GET', '/api/item?rater=olga&item=s3');
    expect(gone.json.media).toEqual({ kind: 'none', problem: 'the video file is missing on the server' });
    expect(gone.text).not.toContain(fx.exportDir);
    expect(open.mediaProblems).toEqual([{ id: 's3', problem: 'video videos/gone-too.mp4 not found under the media root (no video_id to find its frames in --shards)' }]);
  });

  it('shows the shard frames of an item whose video is missing, with a warning at start', async () => {
    expect(open.warnings).toEqual(["rate: warning: 1 item's video is missing under --media-root; it shows its sampled frames from --shards instead: s2 (videos/gone.mp4)"]);
    expect((await send(open, 'GET', '/api/item?rater=olga&item=s2')).json.media).toEqual({ kind: 'frames' });
    const frames = await send(open, 'GET', '/api/frames?item=s2');
    expect([frames.status, frames.json.videoId, frames.json.frames.length]).toEqual([200, 'clip-9', 4]);
  });
});

describe('rpv rate export while the server runs', () => {
  it('exports through the running server from another process, and only with the token the server keeps', async () => {
    const csv = path.join(await tempDir('sec'), 'while.csv');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), 'rate', 'export', '--db', openDb, '--csv', csv], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    const current = await open.session.store.current();
    const stored = (await open.session.store.history()).length;
    const raters = [...new Set(current.map((r) => r.rater))].length;
    expect([code, stderr]).toEqual([0, expect.stringMatching(new RegExp(`^rate export: ${current.length} ratings of ${raters} raters \\(.*\\); ${stored} stored in all \\(read through the running rpv rate serve, process ${process.pid}\\); wrote ${csv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n$`))]);
    expect((await readRatingsCsv(csv)).length).toBe(current.length);
    const anyone = await send(open, 'GET', '/api/export');
    expect(anyone.status).toBe(403);
  }, 60_000);
});
