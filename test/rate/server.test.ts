import { realpathSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportRatings, serveRatings, type RatingsService } from '../../src/index.js';
import { blindLabels, raterItemOrder } from '../../src/rate/index.js';
import { SYSTEM_A, SYSTEM_B, makeRateFixture, tempDir, type RateFixture } from './fixtures.js';

let fx: RateFixture;
let service: RatingsService;
let base: string;
let db: string;
/** Every response body the tests saw: none may name a system. */
const seen: string[] = [];
/** What the server wrote to its output. */
const logged: string[] = [];

async function call(method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; text: string; headers: Headers }> {
  const res = await fetch(new URL(route, base), {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  seen.push(text);
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, json, text, headers: res.headers };
}

const rate = (body: Record<string, unknown>) => call('POST', '/api/ratings', body);

beforeAll(async () => {
  fx = await makeRateFixture();
  db = path.join(await tempDir('db'), 'ratings.duckdb');
  service = await serveRatings({
    answers: [{ system: SYSTEM_A, file: fx.answersA }, { system: SYSTEM_B, file: fx.answersB }],
    db,
    mediaRoot: fx.exportDir,
    shards: fx.shards,
    seed: 'test-seed',
    port: 0,
    log: (line) => logged.push(line),
  });
  base = service.url;
}, 120_000);

afterAll(async () => {
  await service?.close();
});

describe('rpv rate serve: items and blindness', () => {
  it('reads both systems, pairs the two-answer items and skips an item without answers', () => {
    const modes = Object.fromEntries(service.items.items.map((i) => [i.id, `${i.mode}:${i.answers.map((a) => a.system).join('+')}`]));
    expect(modes).toEqual({
      c1: `pairwise:${SYSTEM_A}+${SYSTEM_B}`,
      c2: `pairwise:${SYSTEM_A}+${SYSTEM_B}`,
      c3: `scores:${SYSTEM_A}`,
      c4: `pairwise:${SYSTEM_A}+${SYSTEM_B}`,
      c5: `pairwise:${SYSTEM_A}+${SYSTEM_B}`,
      c6: `pairwise:${SYSTEM_A}+${SYSTEM_B}`,
    });
    expect(service.items.skipped).toEqual([{ id: 'c7', where: `${fx.answersA} line 7`, reason: 'no answer to rate' }]);
    expect(service.items.read).toBe(14);
  });

  it('shows each rater the items in their own seeded order, and the answers under seeded labels', async () => {
    const alice = await call('GET', '/api/progress?rater=alice');
    const bob = await call('GET', '/api/progress?rater=bob');
    const ids = service.items.items.map((i) => i.id);
    expect(alice.json.items.map((i: { item: string }) => i.item)).toEqual(raterItemOrder(ids, 'alice', 'test-seed'));
    expect(bob.json.items.map((i: { item: string }) => i.item)).toEqual(raterItemOrder(ids, 'bob', 'test-seed'));
    expect(alice.json.items.map((i: { item: string }) => i.item)).not.toEqual(bob.json.items.map((i: { item: string }) => i.item));
    expect([alice.json.done, alice.json.total, alice.json.next]).toEqual([0, 6, 0]);
    expect(alice.json.items[0]).toMatchObject({ rated: 0, done: false });

    // Labels: the same rater always sees the same order; across items and raters it varies.
    const flips = new Set<string>();
    for (const rater of ['alice', 'bob', 'carol']) {
      for (const item of service.items.items.filter((i) => i.mode === 'pairwise')) {
        const view = await call('GET', `/api/item?rater=${rater}&item=${item.id}`);
        const expected = blindLabels(item, rater, 'test-seed');
        expect(view.json.answers).toEqual(expected.map(({ label, text }) => ({ label, text })));
        flips.add(expected[0]!.system);
      }
    }
    expect(flips).toEqual(new Set([SYSTEM_A, SYSTEM_B]));
  });

  it('sends the item with its context, Chinese text intact, and the rubric of each metric', async () => {
    const view = (await call('GET', '/api/item?rater=alice&item=c1')).json;
    expect(view).toMatchObject({
      item: 'c1',
      role: '小橘',
      question: '这是什么颜色？',
      profile: '一只爱说话的橘猫，喜欢颜色。',
      summary: '红、绿、蓝、白四种颜色依次出现。',
      history: [{ speaker: 'viewer', text: '你好，小橘！' }, { speaker: '小橘', text: '喵～你好！' }],
      mode: 'pairwise',
      media: { kind: 'video' },
      ratings: {},
    });
    expect(view.metrics).toHaveLength(8);
    expect(view.metrics[0].name).toBe('Character Consistency');
    expect(view.metrics[0].rubric).toMatch(/^Do the responses stay in character as 小橘 throughout/);
  });

  it('never names a system in the page or any API response', async () => {
    for (const route of ['/', '/app.js', '/app.css', '/api/config']) expect((await call('GET', route)).status).toBe(200);
    await rate({ rater: 'dave', item: 'c3', metric: 'Tone Consistency', score: 6 });
    await rate({ rater: 'dave', item: 'c1', metric: 'Tone Consistency', score: 'A' });
    await rate({ rater: 'dave', item: 'c1', metric: 'Tone Consistency', score: 7 });
    await call('GET', '/api/item?rater=dave&item=c1');
    const all = seen.join('\n');
    expect(all).toContain('小橘');
    for (const secret of [SYSTEM_A, SYSTEM_B, 'SysAlpha', 'SysBeta', path.basename(fx.answersA), path.basename(fx.answersB)]) expect(all).not.toContain(secret);
  });
});

describe('rpv rate serve: ratings', () => {
  it('stores a rating once committed, maps the label to its system, and keeps the history of a change', async () => {
    const [first] = blindLabels(service.session.item('c1')!, 'erin', 'test-seed');
    const saved = await rate({ rater: 'erin', item: 'c1', metric: 'Human Likeness', score: 'A' });
    expect(saved.status).toBe(200);
    expect(saved.json).toMatchObject({ saved: true, item: 'c1', metric: 'Human Likeness', score: 'A' });
    const changed = await rate({ rater: 'erin', item: 'c1', metric: 'Human Likeness', score: 'tie' });
    expect(changed.json.seq).toBeGreaterThan(saved.json.seq);
    await rate({ rater: 'erin', item: 'c3', metric: 'Human Likeness', score: 4 });
    await rate({ rater: 'erin', item: 'c3', metric: 'Human Likeness', score: 9 });

    const current = (await service.session.store.current('erin')).map((r) => [r.item, r.system, r.kind, r.score ?? r.choice]);
    expect(current).toEqual([
      ['c1', `${SYSTEM_A} vs ${SYSTEM_B}`, 'pairwise', 'tie'],
      ['c3', SYSTEM_A, 'score', 9],
    ]);
    const history = (await service.session.store.history()).filter((r) => r.rater === 'erin').map((r) => [r.item, r.label, r.score ?? r.choice]);
    expect(history).toEqual([
      ['c1', 'A', first!.system],
      ['c1', 'tie', 'tie'],
      ['c3', 'A', 4],
      ['c3', 'A', 9],
    ]);
    const view = (await call('GET', '/api/item?rater=erin&item=c1')).json;
    expect(view.ratings).toEqual({ 'Human Likeness': 'tie' });
    const progress = (await call('GET', '/api/progress?rater=erin')).json;
    expect(progress.items.find((i: { item: string }) => i.item === 'c3')).toEqual({ item: 'c3', rated: 1, needed: 8, done: false });
  });

  it('refuses bad ratings with a message and stores nothing', async () => {
    const before = (await service.session.store.history()).length;
    const cases: [unknown, number, string][] = [
      [{ rater: 'frank', item: 'nope', metric: 'Tone Consistency', score: 5 }, 400, "unknown item 'nope'"],
      [{ rater: 'frank', item: 'c3', metric: 'Tone', score: 5 }, 400, 'unknown metric "Tone"; expected one of Character Consistency, Knowledge Hallucination, Utterance Fluency, Tone Consistency, Instruction Adherence, Response Accuracy, Video-Text Relevance, Human Likeness'],
      [{ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: 11 }, 400, 'score: expected a whole number from 1 to 10, found 11'],
      [{ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: 0 }, 400, 'score: expected a whole number from 1 to 10, found 0'],
      [{ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: 7.5 }, 400, 'score: expected a whole number from 1 to 10, found 7.5'],
      [{ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: '7' }, 400, 'score: expected a whole number from 1 to 10, found "7"'],
      [{ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: 7, answer: 'B' }, 400, "answer: item 'c3' has answers A; found \"B\""],
      [{ rater: 'frank', item: 'c1', metric: 'Tone Consistency', score: 7 }, 400, "score: item 'c1' is rated pairwise: expected \"A\", \"B\" or \"tie\", found 7"],
      [{ rater: 'frank', item: 'c1', metric: 'Tone Consistency', score: 'C' }, 400, "score: item 'c1' is rated pairwise: expected \"A\", \"B\" or \"tie\", found \"C\""],
      [{ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: 7, extra: 1 }, 400, "unknown field 'extra'; a rating is {rater, item, metric, score, answer?}"],
      [{ rater: '', item: 'c3', metric: 'Tone Consistency', score: 7 }, 400, 'rater: expected a name'],
      [{ rater: 'x'.repeat(65), item: 'c3', metric: 'Tone Consistency', score: 7 }, 400, 'rater: names are at most 64 characters'],
      [{ rater: 'a\u0007b', item: 'c3', metric: 'Tone Consistency', score: 7 }, 400, 'rater: control characters are not allowed in names (U+0007 at character 2): they break the lines and files the name is written to'],
      [[1, 2], 400, 'expected a JSON object {rater, item, metric, score}'],
    ];
    for (const [body, status, error] of cases) {
      const res = await call('POST', '/api/ratings', body);
      expect([res.status, res.json]).toEqual([status, { error }]);
    }
    // The rest of the message is V8's, and changes between Node versions.
    const broken = await call('POST', '/api/ratings', '{"rater": "frank", ');
    expect([broken.status, broken.json.error.startsWith('body is not valid JSON: ')]).toEqual([400, true]);
    const big = await call('POST', '/api/ratings', JSON.stringify({ rater: 'frank', item: 'c3', metric: 'Tone Consistency', score: 7, pad: 'x'.repeat(20_000) }));
    expect(big.status).toBe(413);
    expect(big.json.error).toMatch(/^request body of 200\d\d bytes is over the 16384-byte limit$/);
    expect((await call('DELETE', '/api/ratings')).status).toBe(405);
    expect((await service.session.store.history()).length).toBe(before);
  });
});

describe('rpv rate serve: media', () => {
  it('plays the video found in the export by video_id, and by path, with byte ranges', async () => {
    const size = (await import('node:fs')).statSync(path.join(fx.exportDir, 'videos/clip-1.mp4')).size;
    const whole = await fetch(new URL('/api/media?item=c1', base));
    expect([whole.status, whole.headers.get('content-type'), Number(whole.headers.get('content-length'))]).toEqual([200, 'video/mp4', size]);
    expect((await whole.arrayBuffer()).byteLength).toBe(size);
    const part = await fetch(new URL('/api/media?item=c2', base), { headers: { range: 'bytes=10-109' } });
    expect([part.status, part.headers.get('content-range'), (await part.arrayBuffer()).byteLength]).toEqual([206, `bytes 10-109/${size}`, 100]);
    const bad = await fetch(new URL('/api/media?item=c2', base), { headers: { range: `bytes=${size + 10}-` } });
    expect(bad.status).toBe(416);
  });

  it('refuses paths out of the media root: .., a symlink out, and traversal in the URL', async () => {
    const c4 = await call('GET', '/api/item?rater=alice&item=c4');
    expect(c4.json.media).toEqual({ kind: 'none', problem: "the video's path is refused: it leads out of the media root" });
    expect(await call('GET', '/api/media?item=c4').then((r) => [r.status, r.json])).toEqual([
      404,
      { error: "item 'c4' has no video: the video's path is refused: it leads out of the media root" },
    ]);
    // The operator is told the path at start.
    expect(service.mediaProblems.find((p) => p.id === 'c4')).toEqual({ id: 'c4', problem: 'path escapes export: ../outside-secret.mp4 leaves the export folder through ..' });
    const c5 = await call('GET', '/api/media?item=c5');
    expect([c5.status, c5.json]).toEqual([403, { error: "item 'c5': the video is refused: it is a symlink that leads out of the media root (the server's output says where)" }]);
    expect(c5.text).not.toContain(path.basename(fx.outside));
    expect(logged).toContain(`rate: item c5: refused: path escapes export: videos/link.mp4 is a symlink to ${realpathSync(fx.outside)}, outside the export folder`);
    expect(await call('GET', '/api/media?item=../outside-secret.mp4').then((r) => [r.status, r.json])).toEqual([404, { error: "unknown item '../outside-secret.mp4'" }]);
    for (const route of ['/../outside-secret.mp4', '/%2e%2e/outside-secret.mp4', '/api/media/..%2F..%2Foutside-secret.mp4']) {
      const res = await fetch(new URL(route, base));
      expect(res.status, route).toBe(404);
    }
  });

  it("shows the frames of an item only the shards have: grid cells in the clip's colours", async () => {
    const c6 = await call('GET', '/api/item?rater=alice&item=c6');
    expect(c6.json.media).toEqual({ kind: 'frames' });
    const frames = (await call('GET', '/api/frames?item=c6')).json;
    expect([frames.videoId, frames.cells, frames.encoder]).toEqual(['clip-9', 4, 'grid-v1:cells=4,tokens=frame']);
    expect(frames.times).toEqual([0.5, 1.5, 2.5, 3.5]);
    const colour = (rgb: number[]) => {
      const [r, g, b] = [rgb[0]!, rgb[1]!, rgb[2]!];
      return r > 200 && g > 200 && b > 200 ? 'white' : r > 200 ? 'red' : g > 200 ? 'green' : b > 200 ? 'blue' : `?${r},${g},${b}`;
    };
    expect(frames.frames.map(colour)).toEqual(['red', 'green', 'blue', 'white']);
  });
});

describe('rpv rate serve: raters and sessions', () => {
  it('needs rater tokens beyond loopback', async () => {
    const file = path.join(await tempDir('db'), 'net.duckdb');
    const answers = [{ system: SYSTEM_A, file: fx.answersA }];
    await expect(serveRatings({ answers, db: file, host: '0.0.0.0', port: 0 })).rejects.toThrow('rate: --host 0.0.0.0 is not loopback, so raters need tokens: name them with --raters alice,bob');
    const net = await serveRatings({ answers, db: file, host: '0.0.0.0', port: 0, raters: ['alice', 'bob'] });
    try {
      expect(net.requireTokens).toBe(true);
      const local = `http://127.0.0.1:${net.server.port}`;
      const token = new URL(net.raterLinks[0]!.url).searchParams.get('token')!;
      expect(net.raterLinks.map((r) => r.name)).toEqual(['alice', 'bob']);
      const anonymous = await fetch(`${local}/api/progress?rater=alice`);
      expect([anonymous.status, await anonymous.json()]).toEqual([401, { error: 'this server needs a rater token: open the link `rpv rate serve` printed for you' }]);
      const wrong = await fetch(`${local}/api/progress?token=0123`);
      expect([wrong.status, await wrong.json()]).toEqual([401, { error: 'unknown rater token' }]);
      const mine = await fetch(`${local}/api/progress`, { headers: { authorization: `Bearer ${token}` } });
      expect([mine.status, ((await mine.json()) as { rater: string }).rater]).toEqual([200, 'alice']);
      const media = await fetch(`${local}/api/media?item=c2`);
      expect(media.status).toBe(401);
      const posing = await fetch(`${local}/api/ratings?token=${token}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rater: 'bob', item: 'c3', metric: 'Tone Consistency', score: 5 }) });
      expect([posing.status, await posing.json()]).toEqual([403, { error: "this token is alice's, not bob's" }]);
    } finally {
      await net.close();
    }
    // A second session on the same file keeps the tokens.
    const again = await serveRatings({ answers, db: file, host: '0.0.0.0', port: 0 });
    expect(again.raterLinks.map((r) => r.name)).toEqual(['alice', 'bob']);
    await again.close();
  });

  it('keeps the settings a database was created with', async () => {
    const file = path.join(await tempDir('db'), 'kept.duckdb');
    const answers = [{ system: SYSTEM_A, file: fx.answersA }];
    const first = await serveRatings({ answers, db: file, seed: 's1', port: 0 });
    await first.close();
    await expect(serveRatings({ answers, db: file, seed: 's2', port: 0 })).rejects.toThrow(
      `rate: ${file} was started with --seed s1; this run asks for s2 (raters would see a different session): use a new --db or the same --seed`,
    );
    await expect(serveRatings({ answers, db: file, metrics: 'mmrole', port: 0 })).rejects.toThrow(`rate: ${file} was started with --metrics video2roleplay; this run asks for mmrole`);
    const resumed = await serveRatings({ answers, db: file, port: 0 });
    expect(resumed.session.seed).toBe('s1');
    await resumed.close();
  });

  it('scores each answer when pairwise rating is off, and needs the answer label then', async () => {
    const file = path.join(await tempDir('db'), 'scores.duckdb');
    const s = await serveRatings({ answers: [{ system: SYSTEM_A, file: fx.answersA }, { system: SYSTEM_B, file: fx.answersB }], db: file, pairwise: false, seed: 'x', port: 0 });
    try {
      expect(s.items.items.find((i) => i.id === 'c1')!.mode).toBe('scores');
      const post = (body: unknown) =>
        fetch(new URL('/api/ratings', s.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => [r.status, await r.json()]);
      expect(await post({ rater: 'gina', item: 'c1', metric: 'Tone Consistency', score: 6 })).toEqual([400, { error: "answer: item 'c1' has answers A, B; found undefined" }]);
      expect((await post({ rater: 'gina', item: 'c1', metric: 'Tone Consistency', score: 6, answer: 'B' }))[0]).toBe(200);
      const [, b] = blindLabels(s.items.items.find((i) => i.id === 'c1')!, 'gina', 'x');
      expect((await s.session.store.current('gina')).map((r) => [r.system, r.score])).toEqual([[b!.system, 6]]);
      const progress = (await (await fetch(new URL('/api/progress?rater=gina', s.url))).json()) as { items: { item: string }[] };
      expect(progress.items.find((i) => i.item === 'c1')).toEqual({ item: 'c1', rated: 1, needed: 16, done: false });
    } finally {
      await s.close();
    }
  });

  it('exports a database a server of this process holds, through that server', async () => {
    const { rows, server } = await exportRatings(db);
    expect(server).toEqual({ pid: process.pid, url: service.url });
    expect(rows.filter((r) => r.rater === 'erin').map((r) => [r.item, r.score])).toEqual([
      ['c1', 'tie'],
      ['c3', 9],
    ]);
  });
});
