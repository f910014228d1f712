import { timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { errorMessage } from '../util/errors.js';
import type { MediaResolver } from './media.js';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.js';
import { RateRequestError, SCORE_MAX, SCORE_MIN, checkRaterName, type RateSession } from './session.js';

/**
 * The rating server (node:http): the page, its JSON API and the items' media.
 *
 * | route | what |
 * |---|---|
 * | `GET /` | the page (`app.js`, `app.css` beside it) |
 * | `GET /api/config` | metric names, the scale, whether tokens are needed, the number of items |
 * | `GET /api/progress?rater=` | the rater's items in their order, each with ratings given / needed |
 * | `GET /api/item?rater=&item=` | one item as the rater sees it: answers labelled A, B..., the rater's ratings |
 * | `POST /api/ratings` | `{rater, item, metric, score, answer?}`: 200 once committed; 4xx with `{error}`, nothing stored |
 * | `GET /api/media?item=` | the item's video or image (byte ranges, for seeking) |
 * | `GET /api/frames?item=` | the item's sampled frames from the shards, as colour grids |
 * | `GET /api/export?history=` | every rating, for `rpv rate export` while the server holds the file (export token only) |
 *
 * A rater is named by `rater` (loopback, no `--raters`) or by a token (`Authorization: Bearer
 * <token>` or `?token=`), required when the server has raters with tokens or listens beyond
 * loopback. No response to a rater names a system.
 *
 * Only this server's own page may use it: every request must carry a `Host` this server answers to
 * (its address and port; `localhost` on loopback; also the machine's names and addresses on a
 * wildcard address), else 421 and nothing else, which stops DNS rebinding (a page of
 * `evil.example` whose name turns into 127.0.0.1). A request with an `Origin` must come from
 * `http://<its Host>`, and an API request a browser marks `Sec-Fetch-Site: cross-site` or
 * `same-site` is refused (403), which stops other sites' pages reading or writing through the
 * rater's browser. Ratings are taken only as `application/json` (415 otherwise): a cross-site
 * form or `no-cors` fetch can only send `text/plain`, form or multipart bodies.
 */

export interface RateServerOptions {
  session: RateSession;
  media: MediaResolver;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Raters must send a token (always when `host` is not loopback). */
  requireTokens?: boolean;
  /** Token -> rater name. */
  tokens?: ReadonlyMap<string, string>;
  /** Largest request body accepted; a rating is well under 1 KiB. Default 16 KiB. */
  maxBodyBytes?: number;
  /** Server-side errors (not refused requests). Default: stderr. */
  log?: (line: string) => void;
  /** More names the server is reached by (`rate.lab.example`, a proxy's), for the Host check. */
  allowedHosts?: readonly string[];
  /** `GET /api/export`: what it returns, for the bearer of `token` only. */
  exporter?: { token: string; run: (history: boolean) => Promise<unknown> };
}

export interface RateServer {
  url: string;
  port: number;
  /** Host names (`127.0.0.1:8765`) the server answers to. */
  hosts: ReadonlySet<string>;
  close(): Promise<void>;
}

/** Loopback addresses: the only ones where raters may go without a token. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: ServerResponse, contentType: string, text: string): void {
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': `${contentType}; charset=utf-8`,
    'content-length': Buffer.byteLength(text),
    'content-security-policy': "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  });
  res.end(text);
}

/** The body as JSON, refusing bodies over `limit` bytes (413) and bad JSON (400). */
async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw new RateRequestError(413, `request body of ${declared} bytes is over the ${limit}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new RateRequestError(413, `request body is over the ${limit}-byte limit`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RateRequestError(400, `body is not valid JSON: ${errorMessage(err)}`);
  }
}

/** `Evil.Example.:80` -> `evil.example:80`; `[::1]` -> `[::1]:80` (the port a browser leaves out). */
function normaliseHost(host: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(host.trim().toLowerCase());
  if (!m) return host.trim().toLowerCase();
  return `${m[1]!.replace(/\.$/, '')}:${m[2] ?? '80'}`;
}

/** The host:port names a server bound to `address:port` answers to. */
function serverHosts(address: string, family: string, port: number, wildcard: boolean, extra: readonly string[]): Set<string> {
  const names = new Set<string>();
  const bracket = (a: string) => (a.includes(':') ? `[${a}]` : a);
  names.add(bracket(address));
  if (wildcard || isLoopbackHost(address)) ['localhost', '127.0.0.1', '[::1]'].forEach((n) => names.add(n));
  if (!isLoopbackHost(address)) names.add(os.hostname());
  if (wildcard) {
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) if (family === 'IPv6' || a.family === 'IPv4') names.add(bracket(a.address.replace(/%.*$/, '')));
    }
  }
  for (const name of extra) names.add(name.includes(':') && !name.startsWith('[') ? `[${name}]` : name);
  return new Set([...names].map((n) => normaliseHost(`${n}:${port}`)));
}

/** Parse `bytes=a-b` against a file size; null for no range, 'bad' when unsatisfiable. */
function byteRange(header: string | undefined, size: number): { start: number; end: number } | null | 'bad' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'bad';
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'bad' : { start, end };
}

export async function startRateServer(options: RateServerOptions): Promise<RateServer> {
  const { session, media, host = '127.0.0.1', port = 0, maxBodyBytes = 16 * 1024, log = (line) => process.stderr.write(`${line}\n`) } = options;
  const requireTokens = options.requireTokens ?? !isLoopbackHost(host);
  const tokens = options.tokens ?? new Map<string, string>();
  let hosts = new Set<string>();

  /**
   * Refuse what this server's own page would not send: another Host (DNS rebinding), another
   * Origin, a cross-site API request (the browser's Sec-Fetch-Site).
   */
  const checkSource = (req: IncomingMessage, url: URL): void => {
    const hostHeader = req.headers.host;
    if (!hostHeader || !hosts.has(normaliseHost(hostHeader))) {
      throw new RateRequestError(421, `host '${hostHeader ?? ''}' is not this server's address: open the link \`rpv rate serve\` printed (another name for this server needs --allow-host)`);
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let same = false;
      try {
        same = new URL(origin).origin === new URL(`http://${hostHeader}`).origin;
      } catch {
        same = false;
      }
      if (!same) throw new RateRequestError(403, `cross-origin request from ${origin} refused: only this server's own rating page may send it`);
    }
    const site = req.headers['sec-fetch-site'];
    if (url.pathname.startsWith('/api/') && (site === 'cross-site' || site === 'same-site')) {
      throw new RateRequestError(403, `${site} request refused: only this server's own rating page may call its API`);
    }
  };

  /** The rater a request speaks for: its token's, or the name it gives (loopback only). */
  const identify = (req: IncomingMessage, url: URL, claimed: unknown): string => {
    const auth = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const token = auth?.[1] ?? url.searchParams.get('token');
    if (token) {
      const rater = tokens.get(token);
      if (!rater) throw new RateRequestError(401, 'unknown rater token');
      if (claimed !== undefined && claimed !== null && claimed !== rater) throw new RateRequestError(403, `this token is ${rater}'s, not ${String(claimed)}'s`);
      return rater;
    }
    if (requireTokens) throw new RateRequestError(401, 'this server needs a rater token: open the link `rpv rate serve` printed for you');
    return checkRaterName(claimed);
  };

  const itemParam = (url: URL) => {
    const id = url.searchParams.get('item');
    if (id === null) throw new RateRequestError(400, 'item: missing');
    const item = session.item(id);
    if (!item) throw new RateRequestError(404, `unknown item '${id}'`);
    return item;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://rate.local');
    checkSource(req, url);
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /':
      case 'GET /index.html':
        return sendText(res, 'text/html', PAGE_HTML);
      case 'GET /app.js':
        return sendText(res, 'text/javascript', PAGE_JS);
      case 'GET /app.css':
        return sendText(res, 'text/css', PAGE_CSS);
      case 'GET /api/config':
        return sendJson(res, 200, {
          metrics: session.metricSet.metrics.map((m) => m.name),
          scale: [SCORE_MIN, SCORE_MAX],
          tokens: requireTokens,
          items: session.items.length,
        });
      case 'GET /api/progress': {
        const rater = identify(req, url, url.searchParams.get('rater') ?? undefined);
        return sendJson(res, 200, await session.progress(rater));
      }
      case 'GET /api/item': {
        const rater = identify(req, url, url.searchParams.get('rater') ?? undefined);
        const item = itemParam(url);
        return sendJson(res, 200, { ...(await session.view(rater, item.id)), media: media.info(item) });
      }
      case 'POST /api/ratings': {
        const type = req.headers['content-type'];
        if (type?.split(';')[0]!.trim().toLowerCase() !== 'application/json') {
          throw new RateRequestError(415, `ratings are taken only as application/json, not ${type ?? 'a body without content-type'}: the rating page sends them so, a form or a page of another site cannot`);
        }
        const body = await readJsonBody(req, maxBodyBytes);
        if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RateRequestError(400, 'expected a JSON object {rater, item, metric, score}');
        const rater = identify(req, url, (body as Record<string, unknown>).rater);
        return sendJson(res, 200, await session.rate(rater, body as Record<string, unknown>));
      }
      case 'GET /api/media':
      case 'HEAD /api/media': {
        if (requireTokens) identify(req, url, undefined);
        const { file, size, contentType } = await media.file(itemParam(url));
        const range = byteRange(req.headers.range, size);
        if (range === 'bad') {
          res.writeHead(416, { ...SECURITY_HEADERS, 'content-range': `bytes */${size}` });
          return void res.end();
        }
        const { start, end } = range ?? { start: 0, end: size - 1 };
        res.writeHead(range ? 206 : 200, {
          ...SECURITY_HEADERS,
          'content-type': contentType,
          'accept-ranges': 'bytes',
          'content-length': end - start + 1,
          ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
        });
        if (req.method === 'HEAD' || size === 0) return void res.end();
        const stream = createReadStream(file, { start, end });
        stream.on('error', () => res.destroy());
        stream.pipe(res);
        return;
      }
      case 'GET /api/frames': {
        if (requireTokens) identify(req, url, undefined);
        return sendJson(res, 200, await media.frames(itemParam(url)));
      }
      case 'GET /api/export': {
        const exporter = options.exporter;
        const given = Buffer.from(/^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '');
        const wanted = Buffer.from(exporter?.token ?? '');
        if (!exporter || given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
          throw new RateRequestError(403, 'export: only `rpv rate export` on the server\'s machine may export (with the token the server keeps beside its database)');
        }
        return sendJson(res, 200, await exporter.run(url.searchParams.get('history') === 'true'));
      }
      default:
        throw new RateRequestError(['GET', 'HEAD', 'POST'].includes(req.method ?? '') ? 404 : 405, `no such route: ${req.method} ${url.pathname}`);
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof RateRequestError) {
        // Refused before the body was read (e.g. too large): close the connection rather than read on.
        if (err.status === 413) res.setHeader('connection', 'close');
        sendJson(res, err.status, { error: err.message });
        if (err.status === 413) req.resume();
        return;
      }
      // The details (often a path of the server's disk) go to the server's output only.
      log(`rate: ${req.method} ${req.url}: ${err instanceof Error && err.stack ? err.stack : errorMessage(err)}`);
      sendJson(res, 500, { error: "internal error: the server's output has the details" });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  hosts = serverHosts(address.address, address.family, address.port, address.address === '0.0.0.0' || address.address === '::', options.allowedHosts ?? []);
  return {
    url: `http://${shownHost}:${address.port}/`,
    port: address.port,
    hosts,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
