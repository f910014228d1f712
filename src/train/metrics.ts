/**
 * Run metrics as JSON lines (`<run>/metrics.jsonl`): one object per logged step (`type: "train"`)
 * and per evaluation (`type: "eval"`), appended and flushed as they happen so a killed run keeps
 * everything up to its last line. A resumed run first truncates lines past the checkpoint's step,
 * so the file reads as one uninterrupted run.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorMessage, RpvError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface TrainMetric {
  type: 'train';
  step: number;
  stage: 'projector' | 'lora';
  loss: number;
  lr: number;
  grad_norm: number;
  tokens: number;
  tokens_per_sec: number;
  /** Real tokens over computed positions (rows x padded length) of the step: 1 - its padding share (absent in runs of an older rpv). */
  fill?: number;
  step_sec: number;
  /** Seconds the step waited on the loader. */
  loader_wait_sec: number;
  /** Samples skipped so far (too long for prompt.max_tokens, or nothing to train on). */
  skipped: number;
  /** On several ranks: seconds this rank spent in the step's all-reduce, and the bytes it reduced. */
  allreduce_sec?: number;
  allreduce_bytes?: number;
  /** Present (true) when the step's loss or gradient norm was not finite and its update was not applied. */
  update_skipped?: true;
  time: string;
}

/** Loss over the target tokens of held-out samples (nats per token), its exponential and the focus-word loss. */
export interface HeldOutScore {
  loss: number;
  perplexity: number;
  /** Target tokens scored. */
  tokens: number;
  /** Samples scored. */
  samples: number;
  /** Mean loss on the focus words' tokens; null when none occur. */
  focus_loss: number | null;
  focus_tokens: number;
}

export interface EvalMetric extends HeldOutScore {
  type: 'eval';
  step: number;
  time: string;
}

export type Metric = TrainMetric | EvalMetric;

export class MetricsWriter {
  private constructor(private readonly file: string) {}

  /** Open `<dir>/metrics.jsonl`; with `keepUpToStep` drop lines of later steps (resume). */
  static async open(dir: string, keepUpToStep?: number): Promise<MetricsWriter> {
    const file = path.join(dir, 'metrics.jsonl');
    await fs.mkdir(dir, { recursive: true });
    try {
      if (keepUpToStep !== undefined) {
        // Replaced whole (temp file + rename): a full disk must not cut the lines that are kept.
        const kept = (await readMetrics(file).catch(() => [])).filter((m) => m.step <= keepUpToStep);
        await writeFileAtomic(file, kept.map((m) => `${JSON.stringify(m)}\n`).join(''));
      } else {
        await fs.writeFile(file, '');
      }
    } catch (err) {
      throw new RpvError(`train: cannot write ${file}: ${errorMessage(err)}`);
    }
    return new MetricsWriter(file);
  }

  async write(metric: Metric): Promise<void> {
    try {
      await fs.appendFile(this.file, `${JSON.stringify(metric)}\n`);
    } catch (err) {
      throw new RpvError(`train: step ${metric.step}: cannot append to ${this.file}: ${errorMessage(err)}`);
    }
  }
}

/** Read a metrics file; a torn last line (a kill mid-write) is ignored, other bad lines are errors. */
export async function readMetrics(file: string): Promise<Metric[]> {
  const text = await fs.readFile(file, 'utf8');
  const lines = text.split('\n');
  const out: Metric[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line) as Metric);
    } catch {
      if (i === lines.length - 1) return;
      throw new RpvError(`metrics: ${file} line ${i + 1}: not valid JSON`);
    }
  });
  return out;
}
