import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

interface PlotArgs {
  runs: string[];
  out?: string;
}

const COLORS = ['#08519c', '#d94801', '#238b45', '#6a51a3', '#a50f15', '#525252'];

export const command: CommandModule<object, PlotArgs> = {
  command: 'plot <runs..>',
  describe: 'Draw a run\'s loss and held-out curves as an SVG (several runs: held-out curves overlaid)',
  builder: (y) =>
    y
      .positional('runs', { type: 'string', array: true, demandOption: true, describe: 'Run folders (each with metrics.jsonl)' })
      .option('out', { type: 'string', describe: 'SVG file to write (default: <run>/loss.svg, or ./compare.svg for several runs)' })
      .example('$0 plot runs/demo', 'Writes runs/demo/loss.svg')
      .example('$0 plot runs/demo runs/demo-text-only --out compare.svg', 'Held-out losses of two runs on one plot'),
  handler: async (args) => {
    const path = await import('node:path');
    const { writeFileAtomic } = await import('../util/atomic.js');
    const { readMetrics } = await import('../train/metrics.js');
    const { plotRun, renderSvg, smooth } = await import('../train/plot.js');
    const loaded = [];
    for (const run of args.runs) {
      const file = path.join(run, 'metrics.jsonl');
      const metrics = await readMetrics(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw new RpvError(`plot: ${file}: not found (is ${run} a training run folder?)`);
        throw err;
      });
      if (metrics.length === 0) throw new RpvError(`plot: ${file}: no metrics yet`);
      loaded.push({ run, metrics });
    }
    let svg: string;
    let out: string;
    if (loaded.length === 1) {
      svg = plotRun(loaded[0]!.metrics, path.basename(path.resolve(loaded[0]!.run)));
      out = args.out ?? path.join(loaded[0]!.run, 'loss.svg');
    } else {
      const series = loaded.flatMap(({ run, metrics }, i) => {
        const color = COLORS[i % COLORS.length]!;
        const name = path.basename(path.resolve(run));
        const train = metrics.filter((m) => m.type === 'train');
        const evals = metrics.filter((m) => m.type === 'eval');
        const sm = smooth(train.map((m) => m.loss));
        const s = [{ name: `${name} train`, color, dashed: true, points: train.map((m, j) => [m.step, sm[j]!] as [number, number]) }];
        if (evals.length) s.push({ name: `${name} held-out`, color, dashed: false, points: evals.map((m) => [m.step, m.loss] as [number, number]) });
        return s;
      });
      svg = renderSvg(series, { title: 'loss' });
      out = args.out ?? 'compare.svg';
    }
    await writeFileAtomic(out, svg);
    process.stdout.write(`wrote ${out}\n`);
  },
};
