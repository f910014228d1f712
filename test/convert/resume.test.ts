import { spawn } from 'node:child_process';
import { existsSync, readFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertExport } from '../../src/convert/convert.js';
import { mergeDatasets } from '../../src/shard/merge.js';
import { JOURNAL_FILE } from '../../src/convert/journal.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { cli, readAllRows, repoRoot, sampleExport, tempDir } from './fixtures.js';
import { LOCAL_ADVICE } from '../loader/helpers.js';

let exportDir: string;
let reference: string;
// Every row its own shard: many shards, so the kill lands between two of them.
const common = ['--max-shard-bytes', '1', '--max-frames', '4', '--workers', '1', '--videos-per-process', '2', '--format', 'both'];

beforeAll(async () => {
  exportDir = await sampleExport(8);
  reference = tempDir();
  await convertExport({ input: exportDir, out: reference, maxShardBytes: 1, maxFrames: 4, workers: 1, shardFormat: 'both' });
});

function shardHashes(dir: string): Record<string, string> {
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { shards: { file: string; sha256: string }[] };
  return Object.fromEntries(index.shards.map((s) => [s.file, s.sha256]));
}

describe('interrupt and resume', () => {
  /** Start the CLI and send `signal` as soon as the journal lists a finished shard. */
  async function interrupt(out: string, signal: NodeJS.Signals): Promise<{ code: number | null; sent: boolean; stderr: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli.ts'), 'convert', exportDir, '--out', out, ...common], {
      cwd: repoRoot,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let sent = false;
    while (!sent && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 5));
      try {
        const journal = JSON.parse(readFileSync(path.join(out, JOURNAL_FILE), 'utf8')) as { shards: unknown[] };
        if (journal.shards.length >= 1) sent = child.kill(signal);
      } catch {
        // not written yet, or being renamed
      }
    }
    const code = await exited;
    return { code, sent, stderr };
  }

  it('kill -9 after the first shard, then --resume: the same shards as an uninterrupted run', async () => {
    const out = tempDir();
    const { sent } = await interrupt(out, 'SIGKILL');
    expect(sent).toBe(true);
    expect(existsSync(path.join(out, 'index.json'))).toBe(false);
    // A half-written shard as a crash mid-write leaves it: must not count.
    await fs.writeFile(path.join(out, '.shard-00007.arrow.123.deadbeef.tmp'), 'partial');
    await fs.writeFile(path.join(out, 'shard-00007.arrow'), 'partial');

    const resumed = await cli(['convert', exportDir, '--out', out, ...common, '--resume']);
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toMatch(/convert --resume: keeping \d+ finished shard\(s\)/);
    expect(shardHashes(out)).toEqual(shardHashes(reference));
    expect(await readAllRows(out, 'parquet')).toEqual(await readAllRows(reference, 'parquet'));
    const index = await readShardIndex(out);
    expect(index.counts).toEqual((await readShardIndex(reference)).counts);
    expect(existsSync(path.join(out, JOURNAL_FILE))).toBe(false);
    expect((await fs.readdir(out)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('Ctrl-C stops cleanly with exit 130, and --resume finishes the same dataset', async () => {
    const out = tempDir();
    const { code, sent, stderr } = await interrupt(out, 'SIGINT');
    expect(sent).toBe(true);
    expect(code).toBe(130);
    expect(stderr).toMatch(/convert: interrupted; \d+ finished shard\(s\) kept in .*; run the same command with --resume to finish/);
    const resumed = await cli(['convert', exportDir, '--out', out, ...common, '--resume']);
    expect(resumed.code).toBe(0);
    expect(shardHashes(out)).toEqual(shardHashes(reference));
  });

  it('refuses to resume with different options, and to overwrite without --overwrite', async () => {
    const out = tempDir();
    const controller = new AbortController();
    controller.abort();
    const partial = await convertExport({ input: exportDir, out, maxShardBytes: 1, maxFrames: 4, signal: controller.signal });
    expect(partial.interrupted).toBe(true);
    await expect(convertExport({ input: exportDir, out, maxShardBytes: 1, maxFrames: 5, resume: true })).rejects.toThrow(
      `convert --resume: ${out} was started with other options (sampling: {"fps":1,"minFrames":4,"maxFrames":4,"frameSize":224} -> {"fps":1,"minFrames":4,"maxFrames":5,"frameSize":224}); resume with the same options, or use --overwrite`,
    );
    // An input edited since the interrupted run: refused too.
    const copy = tempDir();
    await fs.cp(exportDir, copy, { recursive: true });
    const out2 = tempDir();
    await convertExport({ input: copy, out: out2, maxShardBytes: 1, maxFrames: 4, signal: controller.signal });
    await fs.appendFile(path.join(copy, 'annotations.jsonl'), '\n');
    await expect(convertExport({ input: copy, out: out2, maxShardBytes: 1, maxFrames: 4, resume: true })).rejects.toThrow(
      /^convert --resume: .* was started with other options \(inputFiles: \[.*"annotations.jsonl:\d+:\d+".*\] -> \[.*\]\); resume with the same options, or use --overwrite$/,
    );
    await expect(convertExport({ input: exportDir, out: reference })).rejects.toThrow(
      `convert: ${reference} already holds a dataset; pass --overwrite to replace it, or choose another --out`,
    );
  });
});

describe('--part and merge', () => {
  it('parts 0/3, 1/3, 2/3 merged equal a single conversion', async () => {
    const parts = [];
    for (let i = 0; i < 3; i++) {
      const dir = tempDir();
      await convertExport({ input: exportDir, out: dir, part: `${i}/3`, maxShardBytes: 1, maxFrames: 4, workers: 1, shardFormat: 'both' });
      parts.push(dir);
    }
    const partRows = await Promise.all(parts.map((p) => readAllRows(p)));
    // Disjoint and covering: 8 videos over 3 parts (by hash; a part may even be empty).
    const ids = partRows.flat().map((r) => r.video_id);
    expect(ids.length).toBe(8);
    expect(new Set(ids).size).toBe(8);
    expect(partRows.filter((rows) => rows.length > 0).length).toBeGreaterThan(1);
    const merged = tempDir();
    await mergeDatasets({ inputs: parts, out: merged });
    const byId = (rows: { video_id: string }[]) => [...rows].sort((a, b) => (a.video_id < b.video_id ? -1 : 1));
    expect(byId(await readAllRows(merged))).toEqual(byId(await readAllRows(reference)));
    expect(byId(await readAllRows(merged, 'parquet'))).toEqual(byId(await readAllRows(reference, 'parquet')));
    const index = await readShardIndex(merged);
    const ref = await readShardIndex(reference);
    expect(index.counts).toEqual(ref.counts);
    expect(index.totals).toEqual(ref.totals);
    expect(index.schema).toEqual(ref.schema);
    // Merging a part twice: duplicate video ids are refused, naming both files.
    await expect(mergeDatasets({ inputs: [parts[0]!, parts[0]!], out: tempDir() })).rejects.toThrow(/^merge: video id ".*" is in both .*shard-00000.arrow and .*shard-00000.arrow; datasets to merge must hold different videos$/);
    // Different sampling: refused.
    const other = tempDir();
    await convertExport({ input: exportDir, out: other, part: '0/3', maxFrames: 5 });
    await expect(mergeDatasets({ inputs: [parts[1]!, other], out: tempDir() })).rejects.toThrow(/^merge: .* does not match .*: sampling: /);
  });
});

describe('inspect --verify', () => {
  it('passes an intact dataset and names a corrupted shard with exit 1', async () => {
    const dir = tempDir();
    await fs.cp(reference, dir, { recursive: true });
    const ok = await cli(['inspect', dir, '--verify']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('verify: all 16 shard file(s) ok');
    const file = path.join(dir, 'shard-00003.parquet');
    const bytes = await fs.readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await fs.writeFile(file, bytes);
    const bad = await cli(['inspect', dir, '--verify', '--json']);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout) as { ok: boolean; checks: { file: string; ok: boolean; problem: string }[] };
    expect(report.ok).toBe(false);
    expect(report.checks.filter((c) => !c.ok).map((c) => c.file)).toEqual(['shard-00003.parquet']);
    expect(report.checks.find((c) => !c.ok)!.problem).toBe(`whole file (bytes 0-${bytes.length - 1}): sha256 mismatch: ${LOCAL_ADVICE}`);
  });
});
