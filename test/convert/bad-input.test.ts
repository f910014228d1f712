import { promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertExport } from '../../src/convert/convert.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { cli, readAllRows, sampleExport, tempDir, writeAnnotations, writeAudioOnly } from './fixtures.js';

const turns = [
  { speaker: 'user', text: '它往哪边跑？' },
  { speaker: 'Mia', text: 'To the left! 🐾' },
];
const rec = (id: string, video: string | null, extra: Record<string, unknown> = {}) => ({ id, video, role: 'Mia', dialogues: [{ turns }], ...extra });

let exportDir: string;
let outsideFile: string;

beforeAll(async () => {
  const sample = await sampleExport(2);
  exportDir = tempDir('rpv-bad-');
  await fs.mkdir(path.join(exportDir, 'videos'));
  for (const name of await fs.readdir(path.join(sample, 'videos'))) {
    await fs.copyFile(path.join(sample, 'videos', name), path.join(exportDir, 'videos', name));
  }
  const good = path.join(exportDir, 'videos', 'clip-01.mp4');
  const bytes = await fs.readFile(good);
  await fs.writeFile(path.join(exportDir, 'videos', 'truncated.mp4'), bytes.subarray(0, Math.floor(bytes.length / 3)));
  await fs.writeFile(path.join(exportDir, 'videos', 'empty.mp4'), '');
  await fs.mkdir(path.join(exportDir, 'videos', 'folder.mp4'));
  await writeAudioOnly(path.join(exportDir, 'videos', 'audio.mp4'));
  outsideFile = path.join(tempDir('rpv-outside-'), 'secret.mp4');
  await fs.copyFile(good, outsideFile);
  await fs.symlink(outsideFile, path.join(exportDir, 'videos', 'link-out.mp4'));
  await fs.symlink(good, path.join(exportDir, 'videos', 'link-in.mp4'));
  await writeAnnotations(exportDir, [
    rec('good-1', 'videos/clip-01.mp4'), // 1
    { raw: '{"id": "broken", "video": ' }, // 2
    { id: 'no-role', video: 'videos/clip-02.mp4', dialogues: [{ turns }] }, // 3
    rec('missing', 'videos/nope.mp4'), // 4
    rec('folder', 'videos/folder.mp4'), // 5
    rec('empty', 'videos/empty.mp4'), // 6
    rec('audio', 'videos/audio.mp4'), // 7
    rec('truncated', 'videos/truncated.mp4'), // 8
    rec('no-turns', 'videos/clip-02.mp4', { dialogues: [{ turns: [] }] }), // 9
    rec('empty-text', 'videos/clip-02.mp4', { dialogues: [{ turns }, { turns: [turns[0], { speaker: 'Mia', text: '  ' }] }] }), // 10
    rec('dotdot', '../secret.mp4'), // 11
    rec('absolute', outsideFile), // 12
    rec('symlink-out', 'videos/link-out.mp4'), // 13
    { raw: Buffer.concat([Buffer.from('{"id": "bad-utf8", "video": null, "role": "Mia", "dialogues": [{"turns": [{"speaker": "u", "text": "'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}]}')]) }, // 14
    rec('good-2', 'videos/clip-02.mp4', { dialogues: [{ id: 'a', turns }] }), // 15
    rec('good-2', 'videos/clip-02.mp4', { dialogues: [{ id: 'b', turns }] }), // 16: same video, grouped
    rec('text-only', null), // 17
    rec('symlink-in', 'videos/link-in.mp4'), // 18
    '', // 19: a JSON string, not an object
  ]);
});

describe('bad input', () => {
  it('skips each bad record with its documented reason; counts reconcile', async () => {
    const out = tempDir();
    const summary = await convertExport({ input: exportDir, out, workers: 2, maxFrames: 4 });
    const index = await readShardIndex(out);
    const reasons = Object.fromEntries(index.skipped.map((s) => [s.line, s.reason]));
    expect(index.skipped.every((s) => s.source === 'annotations.jsonl')).toBe(true);
    expect(reasons[2]).toMatch(/^malformed JSON: /);
    expect(reasons[3]).toBe('missing field: "role"');
    expect(reasons[4]).toBe('video missing: videos/nope.mp4: missing: no such file');
    expect(reasons[5]).toBe('video unreadable: videos/folder.mp4: unreadable: is a directory, not a file');
    expect(reasons[6]).toBe('video empty: videos/empty.mp4: empty: zero-length file');
    expect(reasons[7]).toMatch(/^video audio-only: videos\/audio.mp4: audio-only: /);
    expect(reasons[8]).toMatch(/^video truncated: videos\/truncated.mp4: truncated: /);
    expect(reasons[9]).toBe('empty dialogue: dialogue 1: has no turns');
    expect(reasons[10]).toBe('empty turn: dialogue 2: turn 2: empty text');
    expect(reasons[11]).toBe('path escapes export: ../secret.mp4 leaves the export folder through ..');
    expect(reasons[12]).toBe(`path escapes export: ${outsideFile} is absolute; media paths must be relative to the export folder (or inside a --media-root given explicitly)`);
    expect(reasons[13]).toBe(`path escapes export: videos/link-out.mp4 is a symlink to ${outsideFile}, outside the export folder`);
    expect(reasons[14]).toBe('invalid UTF-8: the line is not valid UTF-8 text');
    expect(reasons[19]).toBe('wrong type: expected a JSON object, found an empty string');
    expect(Object.keys(reasons).map(Number).sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 19]);

    const rows = await readAllRows(out);
    expect(rows.map((r) => r.video_id)).toEqual(['good-1', 'good-2', 'text-only', 'symlink-in']);
    expect(rows[1]!.dialogues.map((d) => d.dialogue_id)).toEqual(['a', 'b']);
    expect(rows[2]!.num_frames).toBe(0);
    expect(rows[0]!.dialogues[0]!.dialogue_id).toBe('d0');
    // read = converted + skipped; the two good-2 records share one row.
    expect(index.counts).toEqual({ read: 19, converted: 5, skipped: 14, rows: 4, grouped: 1 });
    expect(summary.skippedByReason).toEqual({
      'malformed JSON': 1,
      'missing field': 1,
      'video missing': 1,
      'video unreadable': 1,
      'video empty': 1,
      'video audio-only': 1,
      'video truncated': 1,
      'empty dialogue': 1,
      'empty turn': 1,
      'path escapes export': 3,
      'invalid UTF-8': 1,
      'wrong type': 1,
    });
  });

  it('keeps a record whose video is missing as text-only with --missing-media text-only', async () => {
    const dir = tempDir('rpv-mm-');
    await writeAnnotations(dir, [rec('gone', 'videos/gone.mp4')]);
    const out = tempDir();
    await convertExport({ input: dir, out, missingMedia: 'text-only' });
    const rows = await readAllRows(out);
    expect(rows.map((r) => [r.video_id, r.num_frames, r.duration_sec])).toEqual([['gone', 0, null]]);
  });

  it('exits 2 when nothing converted and 1 under --strict with skips', async () => {
    const dir = tempDir('rpv-none-');
    await writeAnnotations(dir, [rec('gone', 'videos/gone.mp4'), { raw: '{' }]);
    const none = await cli(['convert', dir, '--out', tempDir()]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain('converted 0 of 2 records');
    const strict = await cli(['convert', exportDir, '--out', tempDir(), '--strict']);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/^rpv: convert --strict: annotations.jsonl line 2: malformed JSON: /m);
  });
});
