import { RpvError, errorMessage } from '../util/errors.js';
import { Semaphore } from '../util/semaphore.js';
import { hashRequest, type JudgeCache } from './cache.js';

/**
 * A client for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, llama.cpp
 * server, LiteLLM, Ollama's /v1, ...), made for long judging runs: at most `concurrency` calls in
 * flight, retries with exponential backoff and full jitter on 429, 408, 5xx, timeouts and network
 * errors (honouring `Retry-After`), and an on-disk cache consulted before every call.
 */

export type ChatContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };

/** A message to the judge: text, or text and images (OpenAI content parts). */
export interface JudgeMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ChatContentPart[];
}

export interface JudgeClientOptions {
  /** The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`; a URL already
   *  ending in `/chat/completions` is used as is. */
  baseUrl: string;
  /** Model name sent in every request. */
  model: string;
  /** Bearer token; default from the environment (`judgeApiKeyFromEnv`). Local servers need none. */
  apiKey?: string | null;
  /** Calls in flight at once. */
  concurrency?: number;
  /** Retries of one call after the first try (429, 408, 5xx, timeout, network error, bad body). */
  maxRetries?: number;
  /** Time limit of one HTTP call. */
  timeoutMs?: number;
  /** First backoff delay; doubles each retry (with full jitter), capped by `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Longest `Retry-After` honoured; longer requests wait this long instead. */
  maxRetryAfterMs?: number;
  /** Sampling temperature of the judge (0: as deterministic as the server allows). */
  temperature?: number;
  /** Token limit of a review. */
  maxTokens?: number;
  /** Cache of finished calls; null to always call. */
  cache?: JudgeCache | null;
  /** Called before each retry's wait (for logs). */
  onRetry?: (info: { attempt: number; reason: string; delayMs: number }) => void;
}

/** Counters of one client's life, for the report. */
export interface JudgeStats {
  /** HTTP requests sent (retries included). */
  requests: number;
  /** Calls answered from the cache. */
  cacheHits: number;
  /** Calls answered by the endpoint. */
  completed: number;
  /** Retries, by reason (`429`, `500`, `timeout`, `network`, `bad-response`). */
  retries: Record<string, number>;
  /** Calls that failed after every retry. */
  failed: number;
  promptTokens: number;
  completionTokens: number;
}

export interface JudgeReply {
  text: string;
  /** True when the reply came from the cache. */
  cached: boolean;
  /** The request's cache key. */
  key: string;
}

/** The judge's API key from `RPV_JUDGE_API_KEY`, else `OPENAI_API_KEY`; null when neither is set. */
export function judgeApiKeyFromEnv(env: NodeJS.ProcessEnv = process.env): string | null {
  return env.RPV_JUDGE_API_KEY || env.OPENAI_API_KEY || null;
}

/** The chat-completions URL of an API root. */
export function chatCompletionsUrl(baseUrl: string): string {
  const trimmed = baseUrl.replace(/\/+$/, '');
  return trimmed.endsWith('/chat/completions') ? trimmed : `${trimmed}/chat/completions`;
}

/** A call that still failed after every retry (the run records it and goes on). */
export class JudgeGaveUpError extends RpvError {
  constructor(message: string) {
    super(message);
    this.name = 'JudgeGaveUpError';
  }
}

class RetryableError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export class JudgeClient {
  readonly url: string;
  readonly model: string;
  readonly stats: JudgeStats = { requests: 0, cacheHits: 0, completed: 0, retries: {}, failed: 0, promptTokens: 0, completionTokens: 0 };
  private readonly options: Required<Omit<JudgeClientOptions, 'cache' | 'onRetry' | 'apiKey'>> & {
    cache: JudgeCache | null;
    apiKey: string | null;
    onRetry?: JudgeClientOptions['onRetry'];
  };
  private readonly slots: Semaphore;
  /** Whether the endpoint has answered once (any HTTP status): until then a refused connection is fatal. */
  private reached = false;

  constructor({
    baseUrl,
    model,
    apiKey = judgeApiKeyFromEnv(),
    concurrency = 4,
    maxRetries = 6,
    timeoutMs = 120_000,
    backoffMs = 1_000,
    maxBackoffMs = 60_000,
    maxRetryAfterMs = 300_000,
    temperature = 0,
    maxTokens = 1_024,
    cache = null,
    onRetry,
  }: JudgeClientOptions) {
    if (!baseUrl) throw new RpvError('eval: no judge endpoint: pass --base-url (an OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1)');
    if (!model) throw new RpvError('eval: no judge model: pass --model (the name the endpoint serves)');
    if (!(concurrency >= 1)) throw new RpvError(`eval: concurrency must be at least 1, found ${concurrency}`);
    this.url = chatCompletionsUrl(baseUrl);
    this.model = model;
    this.options = {
      baseUrl,
      model,
      apiKey,
      concurrency: Math.floor(concurrency),
      maxRetries,
      timeoutMs,
      backoffMs,
      maxBackoffMs,
      maxRetryAfterMs,
      temperature,
      maxTokens,
      cache,
      onRetry,
    };
    this.slots = new Semaphore(this.options.concurrency);
  }

  /** The request body sent for `messages` (also what the cache key hashes). */
  requestBody(messages: JudgeMessage[]): Record<string, unknown> {
    return { model: this.model, messages, temperature: this.options.temperature, max_tokens: this.options.maxTokens };
  }

  /** One chat completion: from the cache when there, else from the endpoint (with retries). */
  async chat(messages: JudgeMessage[]): Promise<JudgeReply> {
    const body = this.requestBody(messages);
    const key = hashRequest(body);
    const hit = this.options.cache?.get(key);
    if (hit) {
      this.stats.cacheHits++;
      return { text: hit.text, cached: true, key };
    }
    const text = await this.callWithRetries(body);
    await this.options.cache?.put(key, this.model, text);
    this.stats.completed++;
    return { text, cached: false, key };
  }

  private async callWithRetries(body: Record<string, unknown>): Promise<string> {
    const { maxRetries } = this.options;
    for (let attempt = 0; ; attempt++) {
      let error: RetryableError;
      await this.slots.acquire();
      try {
        return await this.callOnce(body);
      } catch (err) {
        if (!(err instanceof RetryableError)) {
          this.stats.failed++;
          throw err;
        }
        error = err;
      } finally {
        this.slots.release();
      }
      if (attempt >= maxRetries) {
        this.stats.failed++;
        throw new JudgeGaveUpError(`eval: judge ${this.url}: gave up after ${attempt + 1} attempts: ${error.message}`);
      }
      this.stats.retries[error.reason] = (this.stats.retries[error.reason] ?? 0) + 1;
      const delayMs = this.retryDelayMs(attempt, error.retryAfterMs);
      this.options.onRetry?.({ attempt: attempt + 1, reason: error.message, delayMs });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }

  private retryDelayMs(attempt: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.options.maxRetryAfterMs);
    const ceiling = Math.min(this.options.maxBackoffMs, this.options.backoffMs * 2 ** attempt);
    // Full jitter (AWS architecture blog): spreads the retries of many concurrent calls.
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  private async callOnce(body: Record<string, unknown>): Promise<string> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    this.stats.requests++;
    let response: Response;
    let raw: string;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      this.reached = true;
      raw = await response.text();
    } catch (err) {
      const name = err instanceof Error ? err.name : '';
      if (name === 'TimeoutError' || name === 'AbortError') {
        throw new RetryableError('timeout', `no reply within ${this.options.timeoutMs} ms`);
      }
      const cause = err instanceof Error && err.cause ? `: ${errorMessage(err.cause)}` : '';
      const code = err instanceof Error ? (err.cause as { code?: unknown } | undefined)?.code : undefined;
      // Nothing listens there, or the host does not exist: retrying for a minute would only hide
      // a wrong --base-url or a server not started. Once it has answered, a refusal is a restart: retried.
      if (!this.reached && typeof code === 'string' && UNREACHABLE_CODES.has(code)) {
        throw new RpvError(`eval: judge ${this.url} cannot be reached${cause}: is the server running, and is --base-url right?`);
      }
      throw new RetryableError('network', `${errorMessage(err)}${cause}`);
    }
    if (!response.ok) {
      const detail = errorDetail(raw);
      const status = response.status;
      if (status === 429 || status === 408 || status >= 500) {
        throw new RetryableError(String(status), `HTTP ${status}${detail}`, parseRetryAfter(response.headers.get('retry-after')));
      }
      const hint = status === 401 || status === 403 ? ' (set RPV_JUDGE_API_KEY or OPENAI_API_KEY)' : '';
      throw new RpvError(`eval: judge ${this.url}: HTTP ${status}${detail}${hint}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new RetryableError('bad-response', `reply is not JSON: ${raw.slice(0, 80)}`);
    }
    const reply = parsed as { choices?: { message?: { content?: unknown } }[]; usage?: { prompt_tokens?: number; completion_tokens?: number } };
    const content = reply.choices?.[0]?.message?.content;
    if (typeof content !== 'string') {
      throw new RetryableError('bad-response', `reply has no choices[0].message.content: ${raw.slice(0, 80)}`);
    }
    this.stats.promptTokens += reply.usage?.prompt_tokens ?? 0;
    this.stats.completionTokens += reply.usage?.completion_tokens ?? 0;
    return content;
  }
}

/** Connection errors that mean no server at the URL (rather than a busy or restarting one). */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH']);

/** `Retry-After` in ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

function errorDetail(raw: string): string {
  try {
    const body = JSON.parse(raw) as { error?: { message?: string } | string; message?: string };
    const message = typeof body.error === 'string' ? body.error : (body.error?.message ?? body.message);
    if (message) return `: ${message}`;
  } catch {
    // not JSON: fall through to the raw text
  }
  const text = raw.trim().slice(0, 200);
  return text ? `: ${text}` : '';
}
