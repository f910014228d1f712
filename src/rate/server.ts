import { createReadStream } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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
 *
 * A rater is named by `rater` (loopback only) or by a token (`Authorization: Bearer <token>` or
 * `?token=`), which is required when the server listens beyond loopback. No response names a system.
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
}

export interface RateServer {
  url: string;
  port: number;
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
      log(`rate: ${req.method} ${req.url}: ${err instanceof Error && err.stack ? err.stack : errorMessage(err)}`);
      sendJson(res, 500, { error: `internal error: ${errorMessage(err)}` });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}/`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
