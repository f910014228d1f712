/// <reference lib="dom" />
// The rating page in a real browser (Debian's chromium, driven by playwright-core): two raters rate
// two items with the keyboard and the mouse, reload and resume, change a rating; the export then
// holds exactly those ratings. A page of another site, and one whose DNS name turns into
// 127.0.0.1, try to write and read ratings and cannot. A screenshot is kept in
// test/rate/.artifacts/ for a person to look at.
// Without chromium the test is skipped with the reason, except in CI (RPV_CI=1), where it fails.
import { existsSync, promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportRatings, serveRatings, type RatingsService } from '../../src/index.js';
import { blindLabels, raterItemOrder } from '../../src/rate/index.js';
import { SYSTEM_A, SYSTEM_B, makeRateFixture, tempDir } from './fixtures.js';

const CHROMIUM = process.env.RPV_CHROMIUM ?? '/usr/bin/chromium';
const IN_CI = process.env.RPV_CI === '1';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM && !IN_CI) process.stdout.write(`browser test skipped: no chromium at ${CHROMIUM} (apt-get install -y chromium fonts-noto-cjk; or set RPV_CHROMIUM)\n`);
export const ARTIFACTS = path.join(import.meta.dirname, '.artifacts');
const SEED = 'browser';

let service: RatingsService;
let fixture: Awaited<ReturnType<typeof makeRateFixture>>;
let browser: Browser;
let db: string;
/** Every rating the raters meant to leave, as the export should hold it. */
const expected = new Map<string, { rater: string; item: string; metric: string; score: number | string; system: string }>();
const bodies: string[] = [];
const pageErrors: string[] = [];

describe.skipIf(!HAVE_CHROMIUM && !IN_CI)('the rating page in Chromium', () => {
  beforeAll(async () => {
    if (!HAVE_CHROMIUM) throw new Error(`no chromium at ${CHROMIUM}, and RPV_CI is set: .ci/run installs it with apt-get`);
    const fx = await makeRateFixture();
    fixture = fx;
    // Two items: c1 (Chinese, both systems: pairwise, video found in the export) and c3 (one answer: scores).
    const pick = async (file: string) => {
      const keep = (await fs.readFile(file, 'utf8')).split('\n').filter((l) => /"id":"c[13]"/.test(l));
      const out = `${file}.two.jsonl`;
      await fs.writeFile(out, `${keep.join('\n')}\n`);
      return out;
    };
    db = path.join(await tempDir('browser'), 'ratings.duckdb');
    service = await serveRatings({
      answers: [{ system: SYSTEM_A, file: await pick(fx.answersA) }, { system: SYSTEM_B, file: await pick(fx.answersB) }],
      db,
      mediaRoot: fx.exportDir,
      raters: ['alice', 'bob'],
      seed: SEED,
      port: 0,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
        // DNS rebinding without a DNS server: the browser resolves evil.example to 127.0.0.1.
        '--host-resolver-rules=MAP evil.example 127.0.0.1',
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await service?.close();
  });

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('response', async (res) => {
      if (!res.url().includes('/api/media')) bodies.push(await res.text().catch(() => ''));
    });
    return page;
  }

  const marks = (page: Page) => page.$$eval('.row .mark', (els) => els.filter((e) => e.textContent === '✓').length);

  /** Rate the open item with keys, one per row from the focused one (a new or a changed rating); record what was meant. */
  async function rateWithKeys(page: Page, rater: string, keys: string[]): Promise<void> {
    for (const key of keys) {
      const row = await page.$$eval('.row', (rows) => rows.findIndex((r) => r.classList.contains('focus')));
      const metric = await page.$eval('.row.focus', (r) => r.closest('.metric')!.querySelector('h4')!.textContent!);
      const value = key === 't' ? 'tie' : key === '0' ? '10' : /^[ab]$/.test(key) ? key.toUpperCase() : key;
      await page.keyboard.press(key);
      await page.waitForFunction(
        ([i, v]) => document.querySelectorAll('.row')[i as number]!.querySelector('button.chosen')?.getAttribute('data-value') === v && document.querySelector('#status')!.textContent === 'saved ✓',
        [row, value],
      );
      record(rater, await currentItem(page, rater), metric, key);
    }
  }

  async function currentItem(page: Page, rater: string): Promise<string> {
    const pos = Number((await page.textContent('#item-pos'))!.match(/^Item (\d)/)![1]) - 1;
    return raterItemOrder(['c1', 'c3'], rater, SEED)[pos]!;
  }

  function record(rater: string, itemId: string, metric: string, key: string): void {
    const item = service.session.item(itemId)!;
    const labels = blindLabels(item, rater, SEED);
    const entry =
      item.mode === 'pairwise'
        ? { rater, item: itemId, metric, system: `${SYSTEM_A} vs ${SYSTEM_B}`, score: key === 't' ? 'tie' : labels.find((l) => l.label === key.toUpperCase())!.system }
        : { rater, item: itemId, metric, system: labels[0]!.system, score: key === '0' ? 10 : Number(key) };
    expected.set(`${rater}|${itemId}|${metric}`, entry);
  }

  const pairwiseKeys = ['a', 'b', 't', 'a', 'a', 'b', 't', 'b'];
  const scoreKeys = ['7', '8', '9', '0', '3', '5', '6', '4'];
  const keysFor = async (page: Page, rater: string) => ((await currentItem(page, rater)) === 'c1' ? pairwiseKeys : scoreKeys);

  it('asks alice for her link (raters are named), then lets her rate an item, reload, resume on the next one and change a rating', async () => {
    const page = await newPage();
    await page.goto(service.url);
    await expect.poll(() => page.textContent('#status')).toBe('This page needs your personal link (with its token).');
    expect(await page.isHidden('#login')).toBe(true);
    await page.goto(service.raterLinks.find((r) => r.name === 'alice')!.url);
    await page.waitForSelector('#rate:not([hidden])');
    expect(await page.textContent('#item-pos')).toBe('Item 1 of 2');
    await rateWithKeys(page, 'alice', await keysFor(page, 'alice'));
    await expect.poll(() => page.textContent('#progress-text')).toBe('1 / 2 items · 8 / 16 ratings');

    await page.reload();
    await page.waitForSelector('#rate:not([hidden])');
    // Resumed: the first item not done, the second of alice's order.
    expect(await page.textContent('#item-pos')).toBe('Item 2 of 2');
    expect(await page.textContent('#who')).toBe('alice');
    const keys = await keysFor(page, 'alice');
    await rateWithKeys(page, 'alice', keys.slice(0, 7));
    // The last row with the mouse.
    const lastMetric = await page.$eval('.row.focus', (row) => row.closest('.metric')!.querySelector('h4')!.textContent!);
    const button = (await currentItem(page, 'alice')) === 'c1' ? 'Tie' : '2';
    await page.click(`.row.focus button:text-is("${button}")`);
    await expect.poll(() => marks(page)).toBe(8);
    record('alice', await currentItem(page, 'alice'), lastMetric, button === 'Tie' ? 't' : '2');

    // Go back and change the first rating of the first item.
    await page.keyboard.press('ArrowLeft');
    await expect.poll(() => page.textContent('#item-pos')).toBe('Item 1 of 2');
    await expect.poll(() => marks(page)).toBe(8);
    await rateWithKeys(page, 'alice', (await keysFor(page, 'alice')) === pairwiseKeys ? ['b'] : ['1']);
    await expect.poll(() => page.textContent('#progress-text')).toBe('2 / 2 items · 16 / 16 ratings');
    await page.keyboard.press('ArrowRight');
    await expect.poll(() => page.textContent('#item-pos')).toBe('Item 2 of 2');
    await page.keyboard.press('ArrowRight');
    await page.waitForSelector('#finished:not([hidden])');
  }, 120_000);

  it("lets bob in by his token link, resumes mid-item, and renders the video and the Chinese text", async () => {
    const page = await newPage();
    await page.goto(service.raterLinks.find((r) => r.name === 'bob')!.url);
    await page.waitForSelector('#rate:not([hidden])');
    expect(await page.textContent('#who')).toBe('bob');
    expect(page.url()).not.toContain('token='); // taken out of the address bar
    const first = await keysFor(page, 'bob');
    await rateWithKeys(page, 'bob', first.slice(0, 3));
    await page.reload();
    await page.waitForSelector('#rate:not([hidden])');
    expect(await page.textContent('#item-pos')).toBe('Item 1 of 2');
    await expect.poll(() => marks(page)).toBe(3);
    await rateWithKeys(page, 'bob', first.slice(3));
    await page.keyboard.press('Enter');
    await expect.poll(() => page.textContent('#item-pos')).toBe('Item 2 of 2');
    await rateWithKeys(page, 'bob', await keysFor(page, 'bob'));

    // Open the Chinese item, wait for its video, and keep a screenshot.
    if ((await currentItem(page, 'bob')) !== 'c1') await page.keyboard.press('ArrowLeft');
    await expect.poll(() => page.textContent('#role')).toBe('小橘');
    await page.click('#profile-box summary');
    const video = await page.waitForFunction(() => {
      const v = document.querySelector('#media video') as HTMLVideoElement | null;
      return v && v.readyState >= 1 ? v.duration : null;
    });
    expect(await video.jsonValue()).toBeCloseTo(4, 1);
    // It plays: served with byte ranges, decoded by the browser (the clip turns green after 1 s).
    await page.$eval('#media video', (v) => {
      const el = v as HTMLVideoElement;
      el.muted = true;
      return el.play();
    });
    await page.waitForFunction(() => (document.querySelector('#media video') as HTMLVideoElement).currentTime > 1.3, undefined, { timeout: 20_000 });
    await page.$eval('#media video', (v) => (v as HTMLVideoElement).pause());
    expect(await page.textContent('#question')).toBe('这是什么颜色？');
    expect(await page.$eval('#question', (e) => e.getAttribute('lang'))).toBe('zh');
    // Chinese glyphs have width: a CJK font is installed and used (tofu boxes would also have width,
    // so the screenshot is for a person to check; this catches text that did not render at all).
    expect(await page.$eval('#question', (e) => e.getBoundingClientRect().width)).toBeGreaterThan(50);
    await fs.mkdir(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'rate-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`screenshot of the rating page: ${shot}\n`);

    for (const html of [await page.content(), ...bodies]) {
      for (const secret of [SYSTEM_A, SYSTEM_B]) expect(html).not.toContain(secret);
    }
    expect(pageErrors).toEqual([]);
  }, 120_000);

  it('draws the sampled frames of an item only the shards have', async () => {
    const answers = path.join(fixture.root, 'frames-only.jsonl');
    await fs.writeFile(answers, `${JSON.stringify({ id: 'c6', role: 'Pixel', video_id: 'clip-9', question: 'Colour?', answer: 'Red.' })}\n`);
    const frames = await serveRatings({ answers: [{ system: SYSTEM_A, file: answers }], db: path.join(await tempDir('frames'), 'f.duckdb'), shards: fixture.shards, port: 0 });
    try {
      const page = await newPage();
      await page.goto(frames.url);
      await page.fill('#name', 'carol');
      await page.click('button[type=submit]');
      await page.waitForFunction(() => document.querySelectorAll('#media canvas').length === 4);
      // Each canvas is the frame's 4x4 grid of cell colours: red, green, blue, white over 4 s.
      const colours = await page.$$eval('#media canvas', (canvases) =>
        canvases.map((c) => Array.from((c as HTMLCanvasElement).getContext('2d')!.getImageData(1, 1, 1, 1).data.slice(0, 3))),
      );
      const name = ([r, g, b]: number[]) => (r! > 200 && g! > 200 && b! > 200 ? 'white' : r! > 200 ? 'red' : g! > 200 ? 'green' : b! > 200 ? 'blue' : '?');
      expect(colours.map(name)).toEqual(['red', 'green', 'blue', 'white']);
      expect(await page.$$eval('#media figcaption', (f) => f.map((e) => e.textContent))).toEqual(['0.5 s', '1.5 s', '2.5 s', '3.5 s']);
      await page.screenshot({ path: path.join(ARTIFACTS, 'rate-frames.png') });
    } finally {
      await frames.close();
    }
  }, 60_000);

  it('lets no page of another site, nor one whose name turns into 127.0.0.1, write or read ratings', async () => {
    // A server without --raters (no tokens): only the checks of where a request comes from protect it.
    const target = await serveRatings({ answers: [{ system: SYSTEM_A, file: fixture.answersA }], db: path.join(await tempDir('csrf'), 'c.duckdb'), seed: SEED, port: 0 });
    const own = await fetch(new URL('/api/ratings', target.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rater: 'alice', item: 'c3', metric: 'Tone Consistency', score: 9 }) });
    expect(own.status).toBe(200);
    const api = new URL('/api/ratings', target.url).href;
    // text/plain form: the body reads {"item":..., "rater":"mallory="}, valid JSON of a valid rating.
    const attack = String.raw`<!doctype html><title>attack</title>
<form id="form" method="POST" enctype="text/plain" action="${api}"><input name='{"item":"c3","metric":"Tone Consistency","score":1,"rater":"mallory' value='"}'></form>
<script>
const target = ${JSON.stringify(target.url)};
const results = [];
const rating = JSON.stringify({ rater: 'mallory', item: 'c3', metric: 'Human Likeness', score: 2 });
Promise.allSettled([
  fetch(target + 'api/ratings', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'application/json' }, body: rating }),
  fetch(target + 'api/ratings', { method: 'POST', mode: 'no-cors', body: rating }),
  fetch(target + 'api/ratings', { method: 'POST', headers: { 'content-type': 'application/json' }, body: rating }),
  fetch(target + 'api/progress?rater=alice').then((r) => r.text()),
]).then((all) => { window.results = all.map((r) => r.status + ':' + (r.status === 'fulfilled' ? String(r.value && r.value.type || r.value) : String(r.reason))); document.title = 'done'; });
</script>`;
    const evil = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(attack);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      const page = await newPage();
      await page.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`);
      await page.waitForFunction(() => document.title === 'done');
      const results = (await page.evaluate(() => (window as unknown as { results: string[] }).results)).map((r) => r.replace(/:.*/, ''));
      // The no-cors posts come back opaque whatever the server did; the cors ones fail in the browser.
      expect(results).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
      const [submitted] = await Promise.all([page.waitForNavigation(), page.evaluate(() => (document.getElementById('form') as HTMLFormElement).submit())]);
      expect(submitted?.status()).toBe(403);

      // DNS rebinding: the attacker's name now leads to the rating server itself, same-origin to the attacker's page.
      const rebound = await newPage();
      const landed = await rebound.goto(`http://evil.example:${target.server.port}/`);
      expect([landed?.status(), JSON.parse((await landed?.text()) ?? '{}')]).toEqual([
        421,
        { error: `host 'evil.example:${target.server.port}' is not this server's address: open the link \`rpv rate serve\` printed (another name for this server needs --allow-host)` },
      ]);
      const read = await rebound.evaluate(() => fetch('/api/progress?rater=alice').then(async (r) => [r.status, await r.text()]));
      expect(read[0]).toBe(421);
      expect(read[1]).not.toContain('c3');

      const raters = (await target.session.store.history()).map((r) => r.rater);
      expect(raters).toEqual(['alice']);
    } finally {
      evil.close();
      await target.close();
    }
  }, 60_000);

  it('exports exactly the ratings given on the page', async () => {
    await service.close();
    const { rows, raters, stored } = await exportRatings(db);
    const got = rows.map(({ rater, item, metric, score, system }) => ({ rater, item, metric, score, system }));
    const sort = (xs: { rater: string; item: string; metric: string }[]) => [...xs].sort((a, b) => `${a.rater}|${a.item}|${a.metric}`.localeCompare(`${b.rater}|${b.item}|${b.metric}`));
    expect(sort(got)).toEqual(sort([...expected.values()]));
    expect(raters).toEqual({ alice: 16, bob: 16 });
    expect(stored).toBe(33); // alice changed one rating: its first value stays in the history
    service = undefined as unknown as RatingsService;
  });
});
