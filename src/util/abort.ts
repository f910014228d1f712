/** Waiting on work that may never finish (a stalled read) without letting it hold a stop. */

/** What `untilAborted` returns when the signal fired first. */
export const ABORTED: unique symbol = Symbol('aborted');

/**
 * `promise`'s value, or ABORTED as soon as `signal` aborts (at once if it already has). The
 * promise keeps running; a rejection after the abort is the caller's to handle.
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T | typeof ABORTED> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise<T | typeof ABORTED>((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
