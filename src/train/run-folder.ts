/**
 * One trainer per run folder, and no run overwritten by mistake.
 *
 * - `lockRunFolder`: `<output_dir>/train.lock` names the process that trains into the folder (pid,
 *   host, start time). A second trainer is refused with the holder's name; a lock left by a
 *   process of this host that is no longer running is taken over, saying so. A lock of another
 *   host (a shared folder) cannot be checked from here: it is taken over only when the user says
 *   that run is gone (`break_lock=true`), never a lock whose process still runs on this host.
 * - `claimRunFolder`: a folder that holds another run (metrics, checkpoints, a final adapter) is
 *   refused unless the run is resumed (`resume=`) or replaced (`overwrite_output_dir=true`).
 *   Temporary files of an earlier process (`.step-*.tmp`, `.recipe.yaml.*.tmp`, `.latest.*.tmp`)
 *   are removed: with the lock held, nobody else writes them.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errorMessage, RpvError } from '../util/errors.js';
import { releaseTemp, trackTemp } from '../util/atomic.js';
import { processAlive } from '../util/process.js';
import { listCheckpoints } from './checkpoint.js';
import { readMetrics } from './metrics.js';

export const LOCK_FILE = 'train.lock';

interface LockHolder {
  pid: number;
  host: string;
  started: string;
}


async function readLock(file: string): Promise<LockHolder | null> {
  // A lock is created, then filled: a reader may find it empty for a moment.
  for (let attempt = 0; attempt < 5; attempt++) {
    const text = await fs.readFile(file, 'utf8').catch(() => null);
    if (text === null) return null;
    try {
      const holder = JSON.parse(text) as LockHolder;
      if (Number.isInteger(holder.pid) && typeof holder.host === 'string') return holder;
    } catch {
      // not complete yet
    }
    await new Promise((r) => setTimeout(r, 40));
  }
  return { pid: -1, host: '?', started: '?' };
}

/** The lock this process holds on a run folder; `release` removes it (also done at exit). */
export interface RunLock {
  file: string;
  release: () => Promise<void>;
}

export interface LockOptions {
  /**
   * Take over a lock held by a process of another host (recipe key `break_lock`): the user knows
   * that run is gone. Default false.
   */
  breakLock?: boolean;
}

/** Take `<dir>/train.lock`, or throw naming the process that holds it. */
export async function lockRunFolder(dir: string, log: (line: string) => void, { breakLock = false }: LockOptions = {}): Promise<RunLock> {
  let created: string | undefined;
  try {
    created = await fs.mkdir(dir, { recursive: true });
  } catch (err) {
    throw new RpvError(`train: output_dir ${dir}: cannot create: ${errorMessage(err)}`);
  }
  const file = path.join(dir, LOCK_FILE);
  const host = os.hostname();
  const mine: LockHolder = { pid: process.pid, host, started: new Date().toISOString() };
  // break_lock takes over one lock, the one found first: a lock taken again meanwhile is refused.
  let broken = false;
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(file, `${JSON.stringify(mine)}\n`, { flag: 'wx' });
      trackTemp(file);
      return {
        file,
        release: async () => {
          releaseTemp(file);
          const holder = await readLock(file);
          if (holder?.pid === process.pid && holder.host === host) await fs.rm(file, { force: true });
          // A run that failed before writing anything leaves no empty folder behind.
          if (created !== undefined) await fs.rmdir(dir).catch(() => {});
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new RpvError(`train: cannot create ${file}: ${errorMessage(err)}`);
    }
    const holder = await readLock(file);
    if (holder === null) continue; // released meanwhile
    const stale = holder.pid === -1 || (holder.host === host && holder.pid !== process.pid && !processAlive(holder.pid));
    if (stale && attempt < 3) {
      log(
        holder.pid === -1
          ? `train: ${file} is unreadable (a process killed while taking it); taking the folder over`
          : `train: ${file} was left by process ${holder.pid} on ${host}, which is no longer running; taking the folder over`,
      );
      await fs.rm(file, { force: true });
      continue;
    }
    const otherHost = holder.host !== host;
    if (otherHost && breakLock && !broken) {
      log(`train: break_lock=true: taking over ${file} from process ${holder.pid} on ${holder.host} (since ${holder.started}), which you say is gone`);
      broken = true;
      await fs.rm(file, { force: true });
      continue;
    }
    throw new RpvError(
      `train: ${dir} is in use by process ${holder.pid} on ${holder.host} (since ${holder.started}, ${file}); wait for that run to end or choose another output_dir` +
        (otherHost
          ? `; ${host} cannot see processes of ${holder.host}: if that run is gone, run again with break_lock=true to take the folder over`
          : breakLock
            ? '; break_lock=true takes over only a lock of another host, and this process still runs here'
            : ''),
    );
  }
}

/** Leftover temporaries of an earlier process, removed; returns their paths relative to `dir`. */
async function removeStaleTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const sub of ['', 'checkpoints', 'adapter']) {
    const folder = path.join(dir, sub);
    const names = await fs.readdir(folder).catch(() => [] as string[]);
    for (const name of names.sort()) {
      if (!name.startsWith('.') || !name.endsWith('.tmp')) continue;
      await fs.rm(path.join(folder, name), { recursive: true, force: true });
      removed.push(path.join(sub, name));
    }
  }
  return removed;
}

/** What of a run `dir` holds, for messages; empty when it holds none. */
async function runContents(dir: string): Promise<string[]> {
  const parts: string[] = [];
  const metricsFile = path.join(dir, 'metrics.jsonl');
  const metrics = await readMetrics(metricsFile).catch(() => null);
  if (metrics && metrics.length > 0) parts.push(`metrics.jsonl to step ${Math.max(...metrics.map((m) => m.step))}`);
  else if (((await fs.stat(metricsFile).catch(() => null))?.size ?? 0) > 0) parts.push('metrics.jsonl');
  const checkpoints = await listCheckpoints(dir);
  if (checkpoints.length > 0) parts.push(`${checkpoints.length} checkpoint${checkpoints.length === 1 ? '' : 's'} up to ${path.basename(checkpoints[checkpoints.length - 1]!)}`);
  if (await fs.stat(path.join(dir, 'adapter')).catch(() => null)) parts.push('a final adapter/');
  return parts;
}

export interface ClaimOptions {
  /** The checkpoint the run resumes from; null for a new run. */
  resumedFrom: string | null;
  /** The step of that checkpoint. */
  resumedStep: number;
  overwrite: boolean;
}

/**
 * Make `dir` ready for this run, holding its lock: remove stale temporaries; refuse a folder
 * holding another run unless it is the one resumed or `overwrite` replaces it; on resume, remove
 * the checkpoints of steps after the one resumed from (a run continued from an earlier point, or
 * past a damaged checkpoint), so `keep_last` never keeps them in place of the new ones.
 */
export async function claimRunFolder(dir: string, { resumedFrom, resumedStep, overwrite }: ClaimOptions, log: (line: string) => void): Promise<void> {
  const temps = await removeStaleTemps(dir);
  if (temps.length > 0) log(`train: removed ${temps.length} temporary file${temps.length === 1 ? '' : 's'} an earlier process left in ${dir}: ${temps.join(', ')}`);
  const ownCheckpoint = resumedFrom !== null && path.resolve(path.dirname(resumedFrom)) === path.resolve(dir, 'checkpoints');
  if (!ownCheckpoint) {
    const held = await runContents(dir);
    if (held.length > 0) {
      if (!overwrite) {
        const resumeHint = resumedFrom === null ? `continue it with resume=${dir}, ` : '';
        throw new RpvError(`train: output_dir ${dir} holds another run (${held.join(', ')}); ${resumeHint}replace it with overwrite_output_dir=true, or choose another output_dir`);
      }
      for (const f of ['checkpoints', 'adapter', 'metrics.jsonl']) await fs.rm(path.join(dir, f), { recursive: true, force: true });
      log(`train: overwrite_output_dir=true: removed the run that was in ${dir} (${held.join(', ')})`);
    }
    return;
  }
  const later = (await listCheckpoints(dir)).filter((d) => Number(path.basename(d).slice('step-'.length)) > resumedStep);
  for (const d of later) await fs.rm(d, { recursive: true, force: true });
  if (later.length > 0) log(`train: removed ${later.map((d) => path.basename(d)).join(', ')}: the run continues from step ${resumedStep}, these hold steps it will redo`);
}
