/** Shared fixtures for the conversion tests: a small real export made with ffmpeg. */
import { execFile } from 'node:child_process';
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeSampleExport } from '../../src/demo/sample-export.js';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { readShard } from '../../src/shard/read.js';
import type { VideoRow } from '../../src/shard/schema.js';

export const run = promisify(execFile);

export function tempDir(prefix = 'rpv-convert-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The sample export with `clips` clips (4 clips: 3, 15, 28 and 40 seconds). */
export async function sampleExport(clips = 4): Promise<string> {
  const dir = tempDir('rpv-sample-');
  await writeSampleExport(dir, { clips, dialoguesPerClip: 3, seed: 3 });
  return dir;
}

/** Write `records` as annotations.jsonl (each a JSON value, or a raw line when a string). */
export async function writeAnnotations(dir: string, lines: readonly (unknown | { raw: string | Buffer })[]): Promise<void> {
  const parts: Buffer[] = [];
  for (const line of lines) {
    const raw = line && typeof line === 'object' && 'raw' in line ? (line as { raw: string | Buffer }).raw : JSON.stringify(line);
    parts.push(Buffer.isBuffer(raw) ? raw : Buffer.from(raw), Buffer.from('\n'));
  }
  await fs.writeFile(path.join(dir, 'annotations.jsonl'), Buffer.concat(parts));
}

/** An audio-only file with an .mp4 name. */
export async function writeAudioOnly(file: string): Promise<void> {
  const { ffmpegPath } = await resolveFfmpeg();
  await run(ffmpegPath, ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', '-c:a', 'aac', '-f', 'mp4', file]);
}

/** Every row of a converted folder, in shard order, from the shards of `format`. */
export async function readAllRows(dir: string, format: 'arrow' | 'parquet' = 'arrow'): Promise<VideoRow[]> {
  const index = await readShardIndex(dir);
  const rows: VideoRow[] = [];
  for (const entry of index.shards.filter((s) => s.format === format)) {
    rows.push(...(await readShard(path.join(dir, entry.file), entry.format, { sha256: entry.sha256 })));
  }
  return rows;
}

export const repoRoot = path.resolve(import.meta.dirname, '../..');

/** Run the CLI as a user would (tsx), returning exit code and output. */
export async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), ...args], { cwd: repoRoot });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
