/**
 * An error caused by the user's input or environment (a bad file, a missing binary, a wrong
 * option). The CLI prints its message alone; any other error is a bug and also gets its stack
 * under `--verbose`.
 */
export class RpvError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RpvError';
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Message of any thrown value, for one-line reports. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
