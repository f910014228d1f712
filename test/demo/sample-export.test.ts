import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeVideo, writeSampleExport } from '../../src/index.js';
import type { SampleExportSummary } from '../../src/index.js';
import { buildClipArgs, parseClipRender, planSampleExport } from '../../src/demo/sample-export.js';
import { VISUAL_WORDS } from '../../src/demo/sample-dialogues.js';
import { tempDir } from '../media/helpers.js';

interface Rec {
  id: string;
  video: string;
  role: string;
  language: 'zh' | 'en';
  platform: string;
  profile: string;
  summary: string;
  dialogues: Array<{ id: string; turns: Array<{ speaker: string; text: string }> }>;
}

let dir: string;
let summary: SampleExportSummary;
let records: Rec[];

beforeAll(async () => {
  dir = await tempDir('sample');
  summary = await writeSampleExport(dir, { seed: 3 });
  const text = await fs.readFile(path.join(dir, 'annotations.jsonl'), 'utf8');
  records = text.trimEnd().split('\n').map((line) => JSON.parse(line) as Rec);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Whether `text` contains the word (whole word for English). */
function says(text: string, word: string, lang: 'zh' | 'en'): boolean {
  return lang === 'zh' ? text.includes(word) : new RegExp(`\\b${word}\\b`, 'i').test(text);
}

describe('writeSampleExport', () => {
  it('writes 24 records in the native format with 2-3 roles, both languages and emoji', () => {
    expect(records).toHaveLength(24);
    expect(summary.clips).toHaveLength(24);
    const roles = new Set(records.map((r) => r.role));
    expect(roles.size).toBeGreaterThanOrEqual(2);
    expect(roles.size).toBeLessThanOrEqual(3);
    expect(new Set(records.map((r) => r.language))).toEqual(new Set(['zh', 'en']));
    for (const r of records) {
      expect(Object.keys(r).sort()).toEqual(['dialogues', 'id', 'language', 'platform', 'profile', 'role', 'summary', 'video']);
      expect(r.video).toBe(`videos/${r.id}.mp4`);
      expect(r.dialogues.length).toBeGreaterThanOrEqual(6);
      for (const d of r.dialogues) {
        expect(d.turns.length).toBeGreaterThanOrEqual(2);
        expect(d.turns[0]!.speaker).not.toBe(r.role);
        expect(d.turns[d.turns.length - 1]!.speaker).toBe(r.role);
        for (const t of d.turns) expect(t.text.trim().length).toBeGreaterThan(0);
      }
    }
    const all = records.flatMap((r) => r.dialogues.flatMap((d) => d.turns.map((t) => t.text)));
    expect(all.some((t) => /\p{Extended_Pictographic}/u.test(t))).toBe(true);
    expect(Math.max(...all.map((t) => t.length))).toBeGreaterThan(150);
    const durations = summary.clips.map((c) => c.durationSec);
    expect(Math.min(...durations)).toBe(3);
    expect(Math.max(...durations)).toBe(40);
  });

  it('writes videos that probe fine and last as long as planned', async () => {
    for (const clip of summary.clips) {
      const info = await probeVideo(path.join(dir, clip.video));
      expect([clip.id, info.width, info.height, info.hasAudio]).toEqual([clip.id, 160, 120, clip.hasAudio]);
      expect(Math.abs(info.durationSec - clip.durationSec)).toBeLessThan(0.15);
    }
  });

  it('has the role name what the clip shows, while the questions never give it away', () => {
    const facts = JSON.parse(JSON.stringify(summary.clips)) as SampleExportSummary['clips'];
    const allColourWords = Object.values(VISUAL_WORDS.colour).flatMap((w) => [w.en, w.zh]);
    const allDirectionWords = Object.values(VISUAL_WORDS.direction).flatMap((w) => [w.en, w.zh]);
    for (const r of records) {
      const clip = facts.find((c) => c.id === r.id)!;
      const lang = r.language;
      const colour = VISUAL_WORDS.colour[clip.colour][lang];
      const direction = VISUAL_WORDS.direction[clip.direction][lang];
      const roleText = r.dialogues.flatMap((d) => d.turns.filter((t) => t.speaker === r.role).map((t) => t.text)).join('\n');
      expect([r.id, says(roleText, colour, lang), says(roleText, direction, lang)]).toEqual([r.id, true, true]);
      // The role never names another clip's colour or direction.
      for (const w of allColourWords) if (w !== colour && w.length > 0) expect([r.id, w, says(roleText, w, /[a-z]/.test(w) ? 'en' : 'zh')]).toEqual([r.id, w, false]);
      for (const w of allDirectionWords) if (w !== direction) expect([r.id, w, says(roleText, w, /[a-z]/.test(w) ? 'en' : 'zh')]).toEqual([r.id, w, false]);
      const userText = r.dialogues.flatMap((d) => d.turns.filter((t) => t.speaker !== r.role).map((t) => t.text)).join('\n') + '\n' + r.summary;
      for (const w of [...allColourWords, ...allDirectionWords]) {
        expect([r.id, w, says(userText, w, /[a-z]/.test(w) ? 'en' : 'zh')]).toEqual([r.id, w, false]);
      }
    }
    // Facts are spread: every colour and every direction appears, and not only with one role.
    expect(new Set(summary.clips.map((c) => c.colour)).size).toBe(4);
    expect(new Set(summary.clips.map((c) => c.direction)).size).toBe(4);
    for (const c of ['red', 'green', 'blue', 'yellow']) {
      expect(new Set(summary.clips.filter((x) => x.colour === c).map((x) => x.role)).size).toBeGreaterThan(1);
    }
  });

  it('rewrites a folder in place without leaving clips the new export does not list (runs last)', async () => {
    await fs.writeFile(path.join(dir, 'videos', '.clip-07.mp4.999.tmp'), 'half-written');
    const small = await writeSampleExport(dir, { seed: 5, clips: 2, dialoguesPerClip: 3 });
    expect((await fs.readdir(path.join(dir, 'videos'))).sort()).toEqual(['clip-01.mp4', 'clip-02.mp4']);
    const lines = (await fs.readFile(path.join(dir, 'annotations.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as Rec).dialogues.length)).toEqual([3, 3]);
    expect(small.dialogues).toBe(6);
  });

  it('asks mostly about colour and direction, answered in short replies that put the word at a fixed place', () => {
    // The mix a tiny model can learn from in minutes: where the video-dependent word goes must be easy to learn.
    const { records: plan, clips } = planSampleExport({ seed: 3, clips: 96 });
    const dialogues = plan.flatMap((r) => r.dialogues);
    const firstReplies = plan.flatMap((r) => {
      const clip = clips.find((c) => c.id === r.id)!;
      return r.dialogues.map((d) => ({ text: d.turns[1]!.text, lang: r.language, colour: VISUAL_WORDS.colour[clip.colour][r.language], direction: VISUAL_WORDS.direction[clip.direction][r.language] }));
    });
    const opensWith = (x: (typeof firstReplies)[number]) =>
      x.lang === 'en'
        ? x.text.startsWith(`It is ${x.colour}`) || x.text.startsWith(`Moving ${x.direction}`)
        : x.text.startsWith(`是${x.colour}的`) || x.text.startsWith(`${x.direction}`);
    expect(firstReplies.filter(opensWith).length / dialogues.length).toBeGreaterThan(0.7);
    expect(firstReplies.filter((x) => opensWith(x) && x.text.length > 40)).toEqual([]);
    // A few long descriptions stay, for realism.
    expect(firstReplies.filter((x) => x.text.length > 150).length).toBeGreaterThan(0);
  });

  it('is deterministic given the seed', () => {
    expect(planSampleExport({ seed: 3 })).toEqual(planSampleExport({ seed: 3 }));
    expect(planSampleExport({ seed: 3 }).records).toEqual(records);
    expect(planSampleExport({ seed: 4 }).records).not.toEqual(records);
    expect(() => planSampleExport({ clips: 0 })).toThrow('sample-export: clips must be an integer from 1 to 999, got 0');
  });
});

describe('clip rendering at other sizes', () => {
  it('scales the frame, the shape and its offsets; the default stays 160x120 at 10 fps', () => {
    const clip = { colour: 'red', direction: 'up', shape: 'bar', background: 'black', durationSec: 6, hasAudio: false } as const;
    const graph = (args: string[]) => args[args.indexOf('-filter_complex') + 1]!;
    const base = graph(buildClipArgs(clip, 'x.mp4'));
    expect(base).toContain('s=160x120:r=10:');
    expect(base).toContain('s=36x12:r=10:');
    const big = graph(buildClipArgs(clip, 'x.mp4', 'libx264', parseClipRender('480x854', 30)));
    expect(big).toContain('s=480x854:r=30:');
    expect(big).toContain('s=108x36:r=30:'); // 3x: the smaller of 480/160 and 854/120
    expect(base.match(/overlay=x='(\d+)\+3\*sin/)![1]).toBe('71');
    expect(big.match(/overlay=x='(\d+)\+9\*sin/)![1]).toBe('213');
    expect(() => parseClipRender('481x3', 10)).toThrow('sample-export: --size must be WxH with even numbers from 16 to 4096, got "481x3"');
    expect(() => parseClipRender('320x240', 0)).toThrow('sample-export: --fps must be from 1 to 120, got 0');
  });
});
