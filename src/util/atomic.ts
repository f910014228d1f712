import { promises as fs, rmSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Temporary name beside `file`, so the final rename stays on one filesystem. */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Temporary files and folders being written now; removed if the process exits first. */
const liveTemps = new Set<string>();
let exitHooked = false;

/**
 * Register `tmp` (a file or folder) so that it is removed should the process exit (`process.exit`,
 * the end of the event loop) before `releaseTemp`: a second Ctrl-C during a checkpoint leaves no
 * `.tmp` behind. A kill -9 cannot be caught; writers remove stale temporaries when they start.
 */
export function trackTemp(tmp: string): void {
  liveTemps.add(tmp);
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const p of liveTemps) {
      try {
        rmSync(p, { recursive: true, force: true });
      } catch {
        // Exiting: nothing else can be done about a temporary that cannot be removed.
      }
    }
  });
}

/** `tmp` was renamed into place or removed. */
export function releaseTemp(tmp: string): void {
  liveTemps.delete(tmp);
}

/**
 * Write `data` to `file` so that readers see either the old content or the whole new content:
 * write a temporary file beside it, fsync, then rename over the target. On any failure (a full
 * disk, a rename refused) the temporary file is removed before the error is thrown.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = tempPathFor(file);
  trackTemp(tmp);
  try {
    const handle = await fs.open(tmp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    // The file it was for, for messages: a failed write() names no path (`ENOSPC: ..., write`).
    if (err instanceof Error && !('targetFile' in err)) Object.assign(err, { targetFile: file });
    throw err;
  } finally {
    releaseTemp(tmp);
  }
}
