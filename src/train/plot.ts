/**
 * Loss curves as a standalone SVG: training loss (raw and smoothed) and held-out loss (and the
 * focus-word loss when the run measured it) against the optimizer step. Hand-written SVG, no
 * dependencies; opens in any browser.
 */
import type { Metric } from './metrics.js';

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
  markers?: boolean;
}

export interface PlotOptions {
  title?: string;
  width?: number;
  height?: number;
  xLabel?: string;
  yLabel?: string;
}

/** Exponential moving average (debiased, as TensorBoard's smoothing). */
export function smooth(values: number[], weight = 0.9): number[] {
  let last = 0;
  let n = 0;
  return values.map((v) => {
    n += 1;
    last = last * weight + (1 - weight) * v;
    return last / (1 - Math.pow(weight, n));
  });
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => (hi - lo) / s <= count) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Draw line series on shared axes; returns the SVG document text. */
export function renderSvg(series: Series[], { title = '', width = 800, height = 450, xLabel = 'step', yLabel = 'loss' }: PlotOptions = {}): string {
  const pad = { left: 64, right: 170, top: 36, bottom: 48 };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  let y0 = ys.length ? Math.min(...ys) : 0;
  let y1 = ys.length ? Math.max(...ys) : 1;
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const margin = (y1 - y0) * 0.05;
  y0 -= margin;
  y1 += margin;
  const pw = width - pad.left - pad.right;
  const ph = height - pad.top - pad.bottom;
  const sx = (x: number) => pad.left + (x1 > x0 ? ((x - x0) / (x1 - x0)) * pw : pw / 2);
  const sy = (y: number) => pad.top + ph - ((y - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  if (title) out.push(`<text x="${pad.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  for (const t of niceTicks(y0, y1)) {
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${pad.left}" x2="${pad.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${pad.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${t}</text>`);
  }
  for (const t of niceTicks(x0, x1, 8)) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${pad.top}" y2="${pad.top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${pad.top + ph + 16}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<rect x="${pad.left}" y="${pad.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${pad.left + pw / 2}" y="${height - 10}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${pad.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length > 0) {
      const d = pts.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.markers ? 2 : 1.5}"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
      if (s.markers) for (const [x, y] of pts) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    const ly = pad.top + 10 + i * 20;
    out.push(`<line x1="${width - pad.right + 12}" x2="${width - pad.right + 36}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    out.push(`<text x="${width - pad.right + 42}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** The standard run plot: train loss (raw, smoothed), held-out loss, held-out focus-word loss. */
export function plotRun(metrics: Metric[], title: string): string {
  const train = metrics.filter((m) => m.type === 'train');
  const evals = metrics.filter((m) => m.type === 'eval');
  const series: Series[] = [];
  if (train.length) {
    series.push({ name: 'train loss', color: '#9ecae1', points: train.map((m) => [m.step, m.loss]) });
    const sm = smooth(train.map((m) => m.loss));
    series.push({ name: 'train (smoothed)', color: '#08519c', points: train.map((m, i) => [m.step, sm[i]!]) });
  }
  if (evals.length) {
    series.push({ name: 'held-out loss', color: '#d94801', points: evals.map((m) => [m.step, m.loss]), markers: true });
    const focus = evals.filter((m) => m.focus_loss !== null);
    if (focus.length) {
      series.push({ name: 'held-out focus words', color: '#238b45', points: focus.map((m) => [m.step, m.focus_loss!]), markers: true, dashed: true });
    }
  }
  return renderSvg(series, { title });
}
