import { promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertExport } from '../../src/convert/convert.js';
import { detectInputFormat } from '../../src/convert/formats/index.js';
import { readShardIndex } from '../../src/shard/index-file.js';
import { readAllRows, sampleExport, tempDir } from './fixtures.js';

let sample: string;

beforeAll(async () => {
  sample = await sampleExport(2);
});

/** A folder with the sample's videos and `file` holding `content`. */
async function exportWith(file: string, content: string): Promise<string> {
  const dir = tempDir('rpv-fmt-');
  await fs.cp(path.join(sample, 'videos'), path.join(dir, 'videos'), { recursive: true });
  await fs.writeFile(path.join(dir, file), content);
  return path.join(dir, file);
}

describe('InternVL / LLaVA chat JSONL', () => {
  it('groups records sharing a video into one row, strips <video>, maps speakers and system', async () => {
    const lines = [
      { id: 's1', video: 'videos/clip-01.mp4', role: '小橘', system: '你是小橘，一只橘猫。', conversations: [{ from: 'human', value: '<video>\n它往哪跑？' }, { from: 'gpt', value: '向左跑喵！🐾' }] },
      { id: 's2', video: 'videos/clip-02.mp4', role: 'Pixel', conversations: [{ from: 'human', value: 'What colour?<video>' }, { from: 'gpt', value: 'Red.' }] },
      { id: 's3', video: 'videos/clip-01.mp4', role: '小橘', conversations: [{ from: 'human', value: '颜色呢？' }, { from: 'gpt', value: '绿色！' }, { from: 'human', value: '谢谢' }, { from: 'gpt', value: '不客气～' }] },
      { id: 's4', video: 'videos/clip-02.mp4', conversations: [{ from: 'robot', value: 'hi' }] },
    ];
    const input = await exportWith('train.jsonl', lines.map((l) => JSON.stringify(l)).join('\n'));
    expect((await detectInputFormat(input)).name).toBe('internvl');
    const out = tempDir();
    await convertExport({ input, out, maxFrames: 4 });
    const rows = await readAllRows(out);
    expect(rows.map((r) => [r.video_id, r.role, r.profile, r.num_frames])).toEqual([
      ['videos/clip-01', '小橘', '你是小橘，一只橘猫。', 4],
      ['videos/clip-02', 'Pixel', null, 4],
    ]);
    expect(rows[0]!.dialogues).toEqual([
      { dialogue_id: 's1', turns: [{ speaker: 'user', text: '它往哪跑？' }, { speaker: '小橘', text: '向左跑喵！🐾' }] },
      { dialogue_id: 's3', turns: [{ speaker: 'user', text: '颜色呢？' }, { speaker: '小橘', text: '绿色！' }, { speaker: 'user', text: '谢谢' }, { speaker: '小橘', text: '不客气～' }] },
    ]);
    expect(rows[1]!.dialogues[0]!.turns[0]!.text).toBe('What colour?');
    const index = await readShardIndex(out);
    expect(index.counts).toEqual({ read: 4, converted: 3, skipped: 1, rows: 2, grouped: 1 });
    expect(index.skipped).toEqual([
      { source: 'train.jsonl', line: 4, reason: 'wrong type: conversations 1: "from" must be one of human, gpt, user, assistant, system; found "robot"' },
    ]);
  });
  it('resolves media against --media-root when annotations live elsewhere', async () => {
    const dir = tempDir('rpv-ann-');
    const line = { id: 'x1', video: 'videos/clip-02.mp4', role: 'Pixel', conversations: [{ from: 'human', value: '<video>hi' }, { from: 'gpt', value: 'hello' }] };
    await fs.writeFile(path.join(dir, 'train.jsonl'), JSON.stringify(line));
    const out = tempDir();
    const summary = await convertExport({ input: path.join(dir, 'train.jsonl'), out, mediaRoot: sample, maxFrames: 4 });
    expect(summary.counts).toMatchObject({ read: 1, converted: 1, skipped: 0 });
    expect((await readAllRows(out)).map((r) => [r.video_id, r.num_frames])).toEqual([['videos/clip-02', 4]]);
  });
});

describe('ShareGPT / LLaMA-Factory', () => {
  it('reads a JSON array of {messages, videos}, text-only when there is no video', async () => {
    const data = [
      { messages: [{ role: 'system', content: 'You are Pixel.' }, { role: 'user', content: '<video>Where does it go?' }, { role: 'assistant', content: 'Up!' }], videos: ['videos/clip-02.mp4'], role: 'Pixel' },
      { id: 'chat-7', messages: [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Hi 👋' }], role: 'Pixel' },
      { messages: [{ role: 'user', content: 'x' }], videos: ['a.mp4', 'b.mp4'] },
    ];
    const input = await exportWith('data.json', JSON.stringify(data));
    expect((await detectInputFormat(input)).name).toBe('sharegpt');
    const out = tempDir();
    await convertExport({ input, out, maxFrames: 4 });
    const rows = await readAllRows(out);
    expect(rows.map((r) => [r.video_id, r.profile, r.num_frames, r.dialogues.map((d) => d.dialogue_id)])).toEqual([
      ['videos/clip-02', 'You are Pixel.', 4, ['data.json:1']],
      ['chat-7', null, 0, ['chat-7']],
    ]);
    expect(rows[0]!.dialogues[0]!.turns).toEqual([
      { speaker: 'user', text: 'Where does it go?' },
      { speaker: 'Pixel', text: 'Up!' },
    ]);
    const index = await readShardIndex(out);
    expect(index.skipped).toEqual([{ source: 'data.json', line: 3, reason: 'unsupported: 2 videos in one record; rpv rows hold one video' }]);
  });
});

describe('role, mixed layouts and absolute paths', () => {
  const share = (video: string, extra: object = {}) => ({
    messages: [{ role: 'user', content: '<video>Where does it go?' }, { role: 'assistant', content: 'Up!' }],
    videos: [video],
    ...extra,
  });

  it('skips a record without role (who speaks the assistant turns) unless --default-role names one', async () => {
    const input = await exportWith('data.jsonl', [share('videos/clip-01.mp4'), share('videos/clip-02.mp4', { role: 'Pixel' })].map((r) => JSON.stringify(r)).join('\n'));
    const out = tempDir();
    await convertExport({ input, out, maxFrames: 4 });
    expect((await readShardIndex(out)).skipped).toEqual([
      { source: 'data.jsonl', line: 1, reason: 'missing field: "role" (the character who speaks the assistant turns); add it to the record or pass --default-role <name>' },
    ]);
    const named = tempDir();
    await convertExport({ input, out: named, maxFrames: 4, defaultRole: 'Captain Nova' });
    const rows = await readAllRows(named);
    expect(rows.map((r) => [r.video_id, r.role, r.dialogues[0]!.turns[1]!.speaker])).toEqual([
      ['videos/clip-01', 'Captain Nova', 'Captain Nova'],
      ['videos/clip-02', 'Pixel', 'Pixel'],
    ]);
  });

  it('reads InternVL and ShareGPT files of one folder each in its own layout', async () => {
    const internvl = { id: 'iv1', video: 'videos/clip-01.mp4', role: 'Pixel', conversations: [{ from: 'human', value: '<video>Colour?' }, { from: 'gpt', value: 'Red.' }] };
    const input = await exportWith('a-internvl.jsonl', JSON.stringify(internvl));
    await fs.writeFile(path.join(input, '..', 'b-sharegpt.json'), JSON.stringify([share('videos/clip-02.mp4', { role: 'Pixel', id: 'sg1' })]));
    const dir = path.dirname(input);
    const out = tempDir();
    const summary = await convertExport({ input: dir, out, maxFrames: 4 });
    expect(summary.counts).toMatchObject({ read: 2, converted: 2, skipped: 0 });
    expect((await readAllRows(out)).map((r) => [r.video_id, r.dialogues[0]!.dialogue_id])).toEqual([
      ['videos/clip-01', 'iv1'],
      ['videos/clip-02', 'sg1'],
    ]);
  });

  it('refuses absolute media paths by default, and accepts those inside an explicit --media-root', async () => {
    const dir = tempDir('rpv-abs-');
    const absolute = path.join(sample, 'videos', 'clip-01.mp4');
    await fs.writeFile(path.join(dir, 'data.jsonl'), JSON.stringify(share(absolute, { role: 'Pixel' })));
    const refused = tempDir();
    await convertExport({ input: path.join(dir, 'data.jsonl'), out: refused, maxFrames: 4 });
    expect((await readShardIndex(refused)).skipped).toEqual([
      { source: 'data.jsonl', line: 1, reason: `path escapes export: ${absolute} is absolute; media paths must be relative to the export folder (or inside a --media-root given explicitly)` },
    ]);
    const out = tempDir();
    const summary = await convertExport({ input: path.join(dir, 'data.jsonl'), out, maxFrames: 4, mediaRoot: sample });
    expect(summary.counts).toMatchObject({ read: 1, converted: 1, skipped: 0 });
    expect((await readAllRows(out)).map((r) => [r.video_id, r.num_frames])).toEqual([['videos/clip-01', 4]]);
  });
});

describe('rpv native', () => {
  it('reads annotations.json (an array) and is detected from the folder', async () => {
    const records = [{ id: 'v1', video: 'videos/clip-01.mp4', role: 'A', dialogues: [{ turns: [{ speaker: 'B', text: 'hi' }, { speaker: 'A', text: 'yo' }] }] }];
    const file = await exportWith('annotations.json', JSON.stringify(records));
    const dir = path.dirname(file);
    expect((await detectInputFormat(dir)).name).toBe('rpv');
    const out = tempDir();
    await convertExport({ input: dir, out, maxFrames: 4 });
    const rows = await readAllRows(out);
    expect(rows.map((r) => [r.video_id, r.source, r.dialogues[0]!.dialogue_id])).toEqual([['v1', 'annotations.json:1', 'd0']]);
  });

  it('names what it tried when no format matches', async () => {
    const dir = tempDir();
    await fs.writeFile(path.join(dir, 'notes.txt'), 'hello');
    await expect(detectInputFormat(dir)).rejects.toThrow(new RegExp(`^convert: cannot tell the format of ${dir}: none of rpv, .*internvl, sharegpt.* matched; pass --input-format \\(rpv: rpv native export`));
  });
});
