/**
 * HTTP(S) downloads with retries and exponential backoff. A transfer that breaks mid-body, a
 * 5xx/429 answer, a timeout or a short body is retried; a 4xx other than 408/429 is not.
 */
export interface RetryOptions {
  /** Attempts in all (first try included). */
  attempts?: number;
  /** Delay before the second attempt; doubles after each failure (with +-25% jitter). */
  backoffMs?: number;
  /** Upper bound of one delay. */
  maxBackoffMs?: number;
  /** Abort one attempt after this long without finishing. */
  timeoutMs?: number;
}

/** Thrown when the caller's signal stopped a download (never retried). */
export class AbortedError extends Error {
  constructor(message = 'stopped') {
    super(message);
    this.name = 'AbortError';
  }
}

/** Throw AbortedError if `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError();
}

export class HttpError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** One GET of the whole body; throws HttpError, or AbortedError when `signal` fires. */
export async function fetchOnce(url: string, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
  throwIfAborted(signal);
  const timeout = AbortSignal.timeout(timeoutMs);
  let response: Response;
  try {
    response = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    throwIfAborted(signal);
    throw new HttpError(`GET ${url}: ${describeFetchError(err)}`, true);
  }
  if (!response.ok) {
    const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
    await response.body?.cancel().catch(() => undefined);
    throw new HttpError(`GET ${url}: HTTP ${response.status} ${response.statusText}`, retryable);
  }
  let body: ArrayBuffer;
  try {
    body = await response.arrayBuffer();
  } catch (err) {
    throwIfAborted(signal);
    throw new HttpError(`GET ${url}: connection broke mid-body (${describeFetchError(err)})`, true);
  }
  const declared = response.headers.get('content-length');
  if (declared !== null && Number(declared) !== body.byteLength) {
    throw new HttpError(`GET ${url}: got ${body.byteLength} bytes, content-length said ${declared}`, true);
  }
  return new Uint8Array(body);
}

function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const causeText = cause instanceof Error ? `: ${cause.message}` : '';
  return `${err.message}${causeText}`;
}

/** Wait `ms`; with a signal, reject with AbortedError as soon as it fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise((resolve) => setTimeout(resolve, ms));
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new AbortedError());
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new AbortedError());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Delay before attempt `attempt` (1-based, attempt >= 2). */
export function backoffDelayMs(attempt: number, { backoffMs = 250, maxBackoffMs = 10_000 }: RetryOptions): number {
  const base = Math.min(maxBackoffMs, backoffMs * 2 ** (attempt - 2));
  return base * (0.75 + 0.5 * Math.random());
}

/**
 * GET with retries. `check` may reject a body (e.g. a checksum mismatch) by returning an error
 * message; that attempt then counts as failed and the file is fetched again. `signal` stops the
 * transfer and the backoff at once (AbortedError, not retried).
 */
export async function fetchWithRetry(
  url: string,
  options: RetryOptions & { signal?: AbortSignal } = {},
  check?: (body: Uint8Array) => string | undefined,
): Promise<Uint8Array> {
  const { attempts = 5, timeoutMs = 120_000, signal } = options;
  const failures: string[] = [];
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep(backoffDelayMs(attempt, options), signal);
    try {
      const body = await fetchOnce(url, timeoutMs, signal);
      const problem = check?.(body);
      if (problem === undefined) return body;
      failures.push(problem);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      failures.push(err.message);
      if (!err.retryable) break;
    }
  }
  const last = failures[failures.length - 1];
  throw new Error(`failed after ${failures.length} attempt${failures.length === 1 ? '' : 's'}: ${last}`);
}
