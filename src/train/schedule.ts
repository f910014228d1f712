/**
 * Learning-rate schedules, as Hugging Face `get_cosine_schedule_with_warmup` and torchtune define
 * them: linear warm-up from 0 to the peak over `warmupSteps`, then cosine (or linear) decay to
 * `minLrRatio * peak` at `totalSteps`. `step` counts optimizer steps already taken, so the first
 * update uses `lrAt(0)`.
 */
export interface ScheduleOptions {
  /** Peak learning rate. */
  peakLr: number;
  /** Optimizer steps in the whole run. */
  totalSteps: number;
  warmupSteps: number;
  type?: 'cosine' | 'linear' | 'constant';
  /** Final learning rate as a fraction of the peak. */
  minLrRatio?: number;
}

export function lrAt(step: number, { peakLr, totalSteps, warmupSteps, type = 'cosine', minLrRatio = 0 }: ScheduleOptions): number {
  if (warmupSteps > 0 && step < warmupSteps) return (peakLr * step) / warmupSteps;
  if (type === 'constant') return peakLr;
  const decaySteps = Math.max(1, totalSteps - warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - warmupSteps) / decaySteps));
  const shape = type === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return peakLr * (minLrRatio + (1 - minLrRatio) * shape);
}

/** Warm-up steps from a recipe: an explicit count wins, else `ceil(ratio * total)`. */
export function warmupStepsFor(totalSteps: number, warmupRatio: number, warmupSteps: number | null): number {
  if (warmupSteps !== null) return Math.min(warmupSteps, totalSteps);
  return Math.ceil(warmupRatio * totalSteps);
}
