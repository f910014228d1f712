/**
 * The output folder of a conversion: fresh, replaced (`--overwrite`) or resumed (`--resume`, with
 * the journal's checks), and the input fingerprint a resume must match.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import { INDEX_FILE_NAME } from '../shard/index-file.js';
import { JOURNAL_FILE, fingerprintChanges, newJournal, readJournal, removeStrayFiles, verifyJournalShards, type Journal } from './journal.js';

/**
 * Size and modification time of the input's annotation files (JSON/JSONL, outside `out`), so that
 * `--resume` refuses an input that changed since the interrupted run.
 */
export async function inputFilesFingerprint(input: string, out: string): Promise<string[]> {
  const { listFiles } = await import('./formats/json-input.js');
  const st = await fs.stat(input);
  const files = st.isDirectory() ? await listFiles(input, ['.json', '.jsonl']) : [input];
  const inside = (f: string) => {
    const rel = path.relative(out, f);
    return !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  const out2: string[] = [];
  for (const f of files) {
    if (inside(f)) continue;
    const s = await fs.stat(f);
    out2.push(`${path.relative(input, f) || path.basename(f)}:${s.size}:${Math.round(s.mtimeMs)}`);
  }
  return out2;
}

/**
 * Make `out` ready: a fresh folder, a replaced dataset (`overwrite`), or a resumed one. Returns
 * the journal to continue, or 'complete' when a resumed folder already has its index.
 */
export async function prepareOutput(
  out: string,
  options: { resume?: boolean; overwrite?: boolean },
  fingerprint: Record<string, unknown>,
  log: (line: string) => void,
): Promise<Journal | 'complete'> {
  const names = await fs.readdir(out).catch(() => [] as string[]);
  const hasIndex = names.includes(INDEX_FILE_NAME);
  const hasJournal = names.includes(JOURNAL_FILE);
  const shardFiles = names.filter((n) => /^shard-\d+\.(arrow|parquet)$/.test(n));
  if (options.resume) {
    if (hasJournal) {
      const journal = (await readJournal(out))!;
      const changes = fingerprintChanges(journal.fingerprint, fingerprint);
      if (changes.length > 0) {
        throw new RpvError(`convert --resume: ${out} was started with other options (${changes.join('; ')}); resume with the same options, or use --overwrite`);
      }
      const { kept, dropped } = await verifyJournalShards(out, journal.shards);
      for (const d of dropped) log(`convert --resume: redoing ${d}`);
      journal.shards = kept;
      const removed = await removeStrayFiles(out, new Set(kept.flatMap((s) => s.entries.map((e) => e.file))));
      if (removed.length > 0) log(`convert --resume: removed ${removed.length} unfinished file(s): ${removed.join(', ')}`);
      return journal;
    }
    if (hasIndex) return 'complete';
    if (shardFiles.length > 0) throw new RpvError(`convert --resume: ${out} holds shard files but no journal or index.json; it was not written by rpv convert (or the journal was deleted): use --overwrite`);
    log(`convert --resume: nothing to resume in ${out}; starting`);
    return newJournal(fingerprint);
  }
  if (hasIndex || hasJournal || shardFiles.length > 0) {
    if (!options.overwrite) {
      const what = hasJournal ? 'an interrupted conversion (pass --resume to continue it)' : 'a dataset';
      throw new RpvError(`convert: ${out} already holds ${what}; pass --overwrite to replace it${hasJournal ? '' : ', or choose another --out'}`);
    }
    for (const name of [...shardFiles, INDEX_FILE_NAME, JOURNAL_FILE]) await fs.rm(path.join(out, name), { force: true });
    await removeStrayFiles(out, new Set());
  }
  return newJournal(fingerprint);
}
