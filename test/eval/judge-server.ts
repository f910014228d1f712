import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A chat-completions server on 127.0.0.1 that plays a judge with canned, realistic reviews. The
 * behaviour is chosen by a `case=<name>` tag in the question of each sample:
 *
 * - `ok`: `... [Scores]: (8, 10)`
 * - `malformed`: a review without scores; asked again, full-width `[Scores]：（７，１０）`
 * - `hopeless`: never gives scores
 * - `ratelimit`: first call per metric and order answers 429 with `Retry-After: 0.05`, then ok
 * - `error500`: first call answers 500, then ok
 * - `slow`: first call answers after `slowMs` (past the client's timeout), then ok
 * - `bias`: scores the answer `GOOD` 8 and `PLAIN` 6, plus 1 for whichever is shown first
 * - `unauthorized`: 401
 */
export interface FakeJudge {
  url: string;
  /** Requests received, by case. */
  requests: Map<string, number>;
  total(): number;
  /** The Authorization headers seen. */
  authorizations: Set<string>;
  close(): Promise<void>;
}

const SCORE_OF: Record<string, number> = { GOOD: 8, PLAIN: 6 };

function between(text: string, start: string, end: string): string {
  const i = text.indexOf(start);
  const j = text.indexOf(end, i + start.length);
  return i < 0 || j < 0 ? '' : text.slice(i + start.length, j).trim();
}

export async function startFakeJudge(options: { slowMs?: number } = {}): Promise<FakeJudge> {
  const slowMs = options.slowMs ?? 5000;
  const requests = new Map<string, number>();
  const firstSeen = new Set<string>();
  const authorizations = new Set<string>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      authorizations.add(req.headers.authorization ?? '');
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `no route ${req.url}` } }));
        return;
      }
      const request = JSON.parse(body) as { model: string; messages: { role: string; content: string | { type: string; text?: string }[] }[] };
      const first = request.messages.find((m) => m.role === 'user')!;
      const prompt = typeof first.content === 'string' ? first.content : first.content.map((p) => p.text ?? '').join('');
      const kase = /case=(\w+)/.exec(prompt)?.[1] ?? 'ok';
      requests.set(kase, (requests.get(kase) ?? 0) + 1);
      const metric = /aspect of each model's response:\n([^:]+):/.exec(prompt)?.[1] ?? '?';
      const modelA = between(prompt, "[Model A's Response Start]**", "## **[Model A's Response End]");
      const modelB = between(prompt, "[Model B's Response Start]**", "## **[Model B's Response End]");
      const key = `${kase}|${metric}|${modelA}`;
      const isFirst = !firstSeen.has(key);
      firstSeen.add(key);
      const reasked = request.messages.length > 2;
      const reply = (content: string) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'chatcmpl-test',
            object: 'chat.completion',
            model: request.model,
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
          }),
        );
      };
      const okText = `Model B is a little more in character than Model A on ${metric}. [Scores]: (8, 10)`;
      switch (kase) {
        case 'malformed':
          return reply(reasked ? 'Both are fluent, B slightly more so.\n[Scores]：（７，１０）' : 'Both responses are fluent; Model B reads slightly more naturally.');
        case 'hopeless':
          return reply('I would rather not assign numbers to these responses.');
        case 'ratelimit':
          if (isFirst) {
            res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '0.05' });
            return res.end(JSON.stringify({ error: { message: 'Rate limit reached for requests' } }));
          }
          return reply(okText);
        case 'error500':
          if (isFirst) {
            res.writeHead(500, { 'content-type': 'application/json' });
            return res.end(JSON.stringify({ error: { message: 'The server had an error while processing your request.' } }));
          }
          return reply(okText);
        case 'slow':
          if (isFirst) {
            setTimeout(() => {
              if (!res.destroyed) reply(okText);
            }, slowMs);
            return;
          }
          return reply(okText);
        case 'bias': {
          const a = (SCORE_OF[modelA] ?? 5) + 1;
          const b = SCORE_OF[modelB] ?? 5;
          return reply(`Model A is shown first and gets the benefit of the doubt. [Scores]: (${a}, ${b})`);
        }
        case 'unauthorized':
          res.writeHead(401, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ error: { message: 'Incorrect API key provided' } }));
        default:
          return reply(okText);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    total: () => [...requests.values()].reduce((a, b) => a + b, 0),
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
