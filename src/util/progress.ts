/**
 * A one-line progress display on stderr: done/total, rate, ETA and free-form fields.
 * On a terminal it redraws in place; elsewhere (CI, logs) it prints a line at most every
 * `intervalMs` so logs stay readable.
 */
export interface ProgressOptions {
  /** Label before the counts, e.g. `convert`. */
  label: string;
  /** Total units of work, when known. */
  total?: number;
  /** Unit name for the rate, e.g. `videos`. */
  unit?: string;
  /** Minimum time between redraws (terminal) or printed lines (not a terminal). */
  intervalMs?: number;
  /** Stream to draw on; default process.stderr. Pass null to draw nothing. */
  stream?: NodeJS.WriteStream | null;
}

export class Progress {
  private readonly label: string;
  private readonly unit: string;
  private readonly intervalMs: number;
  private readonly stream: NodeJS.WriteStream | null;
  private readonly startMs = Date.now();
  private lastDrawMs = 0;
  private fields: Record<string, string | number> = {};
  total: number | undefined;
  done = 0;

  constructor({ label, total, unit = 'items', intervalMs, stream = process.stderr }: ProgressOptions) {
    this.label = label;
    this.total = total;
    this.unit = unit;
    this.stream = stream;
    this.intervalMs = intervalMs ?? (stream?.isTTY ? 100 : 10_000);
  }

  /** Elapsed seconds since the bar was created. */
  get elapsedSec(): number {
    return (Date.now() - this.startMs) / 1000;
  }

  /** Add `n` finished units and set display fields (e.g. `{ loss: 2.31 }`). */
  tick(n = 1, fields?: Record<string, string | number>): void {
    this.done += n;
    if (fields) this.fields = { ...this.fields, ...fields };
    const now = Date.now();
    if (now - this.lastDrawMs >= this.intervalMs) {
      this.lastDrawMs = now;
      this.draw(false);
    }
  }

  /** The current line, without terminal control characters. */
  render(): string {
    const elapsed = this.elapsedSec;
    const rate = elapsed > 0 ? this.done / elapsed : 0;
    const parts = [this.label];
    if (this.total !== undefined && this.total > 0) {
      const pct = Math.min(100, (100 * this.done) / this.total);
      const width = 20;
      const filled = Math.round((pct / 100) * width);
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.done}/${this.total}`);
    } else {
      parts.push(`${this.done}`);
    }
    parts.push(`${rate.toFixed(rate >= 10 ? 0 : 2)} ${this.unit}/s`);
    for (const [k, v] of Object.entries(this.fields)) parts.push(`${k} ${typeof v === 'number' ? formatNumber(v) : v}`);
    if (this.total !== undefined && rate > 0 && this.done < this.total) {
      parts.push(`ETA ${formatDuration((this.total - this.done) / rate)}`);
    } else {
      parts.push(`${formatDuration(elapsed)}`);
    }
    return parts.join('  ');
  }

  /** Draw the final state and end the line. */
  finish(): void {
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (!this.stream) return;
    const line = this.render();
    if (this.stream.isTTY) this.stream.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else this.stream.write(`${line}\n`);
  }
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(4);
}

/** `75` -> `1m15s`. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}
