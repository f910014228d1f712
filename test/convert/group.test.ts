import { describe, expect, it } from 'vitest';
import { groupRecords, parsePart, partOfKey } from '../../src/convert/group.js';
import type { SourceRecord } from '../../src/convert/record.js';

const turns = [{ speaker: 'u', text: 'hi' }];
const rec = (line: number, id: string, video: string | null, extra: Partial<SourceRecord> = {}): SourceRecord => ({
  file: 'a.jsonl',
  line,
  id,
  video,
  role: 'R',
  dialogues: [{ turns }],
  ...extra,
});

describe('groupRecords', () => {
  it('groups by normalised path, keeps first-seen metadata, and skips inconsistent records with reasons', () => {
    const { groups, skips } = groupRecords([
      rec(1, 'v1', 'videos/a.mp4', { dialogues: [{ id: 'x', turns }, { turns }] }),
      rec(2, 'v1', './videos/../videos/a.mp4', { profile: 'P', dialogues: [{ turns }] }),
      rec(3, 'v9', 'videos/a.mp4'),
      rec(4, 'v1', 'videos/a.mp4', { role: 'Other' }),
      rec(5, 'v1', 'videos/b.mp4'),
      rec(6, 'v1', 'videos/a.mp4', { dialogues: [{ id: 'x', turns }] }),
      rec(7, 't1', null),
      rec(8, 't1', null, { dialogues: [{ id: 'd0', turns }] }),
    ]);
    expect(groups.map((g) => [g.videoId, g.video, g.records.map((r) => r.line), g.profile])).toEqual([
      ['v1', 'videos/a.mp4', [1, 2], 'P'],
      ['t1', null, [7, 8], null],
    ]);
    // Generated ids avoid explicit ones (t1 has an explicit d0, so its first dialogue gets d0-1).
    expect(groups[0]!.dialogues.map((d) => d.dialogue_id)).toEqual(['x', 'd1', 'd2']);
    expect(groups[1]!.dialogues.map((d) => d.dialogue_id)).toEqual(['d0-1', 'd0']);
    expect(skips).toEqual([
      { source: 'a.jsonl', line: 3, reason: 'conflicting id: videos/a.mp4 is already the video of id "v1" (a.jsonl line 1), this record says "v9"' },
      { source: 'a.jsonl', line: 4, reason: 'conflicting role: video "v1" already has role "R" (a.jsonl line 1), this record says "Other"' },
      { source: 'a.jsonl', line: 5, reason: 'duplicate video id: "v1" is already used for videos/a.mp4 (a.jsonl line 1)' },
      { source: 'a.jsonl', line: 6, reason: 'duplicate dialogue id: "x" appears twice in video "v1"' },
    ]);
  });
});

describe('--part', () => {
  it('parses i/N and spreads keys deterministically over every part', () => {
    expect(parsePart('2/4')).toEqual({ index: 2, count: 4 });
    expect(() => parsePart('4/4')).toThrow('convert: --part "4/4": i must be below N (parts are numbered 0 to 3)');
    expect(() => parsePart('1-of-4')).toThrow('convert: --part "1-of-4": expected i/N, e.g. 0/4 (i counts from 0)');
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 400; i++) counts[partOfKey(`media:videos/clip-${i}.mp4`, 4)]!++;
    expect(counts.every((c) => c > 60)).toBe(true);
    expect(partOfKey('media:videos/clip-7.mp4', 4)).toBe(partOfKey('media:videos/clip-7.mp4', 4));
    expect(partOfKey('anything', 1)).toBe(0);
  });
});
