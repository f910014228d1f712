import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ParsedItem, SourceRecord } from '../../src/convert/record.js';
import { chatharuhiFormat } from '../../src/convert/formats/chatharuhi.js';
import { mmroleFormat } from '../../src/convert/formats/mmrole.js';
import { rolebenchFormat } from '../../src/convert/formats/rolebench.js';
import type { SkipRecord } from '../../src/shard/schema.js';

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures');
const MMROLE_EVAL = path.resolve(import.meta.dirname, '../fixtures/mmrole');
const FORMATS = [mmroleFormat, chatharuhiFormat, rolebenchFormat];

async function readAll(
  format: typeof mmroleFormat,
  input: string,
  options: { root: string; missingMedia?: 'skip' | 'text-only' },
): Promise<{ records: SourceRecord[]; skips: SkipRecord[] }> {
  const records: SourceRecord[] = [];
  const skips: SkipRecord[] = [];
  const read = format.read as (input: string, options: object) => AsyncGenerator<ParsedItem>;
  for await (const item of read(input, options)) {
    if (item.kind === 'record') records.push(item.record);
    else skips.push(item.skip);
  }
  return { records, skips };
}

const turnsOf = (r: SourceRecord) => r.dialogues.flatMap((d) => d.turns.map((t) => [t.speaker, t.text]));

describe('auto-detection', () => {
  it.each([
    ['mmrole', 'mmrole'],
    ['chatharuhi', 'chatharuhi'],
    ['rolebench', 'rolebench'],
  ])('%s fixtures are detected as %s and only as it', async (dir, name) => {
    const input = path.join(FIXTURES, dir);
    const detected = [];
    for (const f of FORMATS) if (await f.detect(input)) detected.push(f.name);
    expect(detected).toEqual([name]);
  });

  it("the converter's registry picks each importer (MMRole before InternVL, whose detect also accepts it)", async () => {
    const { detectInputFormat } = await import('../../src/convert/formats/index.js');
    for (const [input, name] of [
      [path.join(FIXTURES, 'mmrole'), 'mmrole'],
      [path.join(MMROLE_EVAL, 'reviews/gpt-4-turbo/inter-role_test.json'), 'mmrole'],
      [path.join(FIXTURES, 'chatharuhi/Haruhi_54K_sample.jsonl'), 'chatharuhi'],
      [path.join(FIXTURES, 'rolebench'), 'rolebench'],
    ]) {
      expect((await detectInputFormat(input!)).name).toBe(name);
    }
  });

  it('MMRole-Eval review files are detected as MMRole-Data', async () => {
    expect(await mmroleFormat.detect(path.join(MMROLE_EVAL, 'reviews/gpt-4-turbo/comment_test.json'))).toBe(true);
    expect(await chatharuhiFormat.detect(path.join(MMROLE_EVAL, 'reviews/gpt-4-turbo/comment_test.json'))).toBe(false);
  });
});

describe('ChatHaruhi-54K', () => {
  it('turns each line into a text-only dialogue and skips bad lines with reasons', async () => {
    const root = path.join(FIXTURES, 'chatharuhi');
    const { records, skips } = await readAll(chatharuhiFormat, root, { root });
    expect(records.map((r) => [r.line, r.role, r.language, r.video])).toEqual([
      [1, '凉宫春日', 'zh', null],
      [2, 'Sheldon', 'en', null],
      [4, '李云龙', 'zh', null],
      [10, 'Harry', 'en', null],
    ]);
    // `:` and `：` both separate the speaker; 「」 quotes are removed.
    expect(turnsOf(records[0]!)).toEqual([
      ['阿虚', '春日，今天社团活动做什么？'],
      ['凉宫春日', '当然是去找外星人、未来人和超能力者啦！'],
      ['阿虚', '又来了……'],
      ['凉宫春日', '有意见吗？这是团长命令！'],
      ['朝比奈实玖瑠', '好、好的……'],
    ]);
    expect(turnsOf(records[1]!)[1]).toEqual(['Sheldon', 'Only if we watch the extended editions. Anything else is a compromise I refuse to make. 🎬']);
    // Narration keeps its speaker: never the role speaking.
    expect(turnsOf(records[2]!)[0]).toEqual(['旁白', '战士们在村口集合，天色渐暗。']);
    expect(turnsOf(records[3]!)).toEqual([
      ['scene', "The Great Hall is quiet; a letter drops onto Harry's plate."],
      ['Harry', "Another one from Hagrid? Brilliant — he's asking us to tea."],
      ['Ron', "Tell him we're not eating the rock cakes."],
    ]);
    expect(new Set(records.map((r) => r.id)).size).toBe(records.length);
    expect(skips).toEqual([
      { source: 'Haruhi_54K_sample.jsonl', line: 3, reason: expect.stringMatching(/^malformed JSON: /) },
      { source: 'Haruhi_54K_sample.jsonl', line: 6, reason: 'missing field: "agent_response"' },
      { source: 'Haruhi_54K_sample.jsonl', line: 7, reason: 'invalid UTF-8: the line is not valid UTF-8 text' },
      {
        source: 'Haruhi_54K_sample.jsonl',
        line: 8,
        reason: 'wrong type: "more_dialogues" 1 must be "Speaker:「text」", found "just some words with no speaker"',
      },
      { source: 'Haruhi_54K_sample.jsonl', line: 9, reason: 'empty turn: turn 1: empty text' },
    ]);
    // Every non-blank line is accounted for: read = records + skips.
    expect(records.length + skips.length).toBe(9);
  });
});

describe('RoleBench', () => {
  it('one dialogue per distinct generated answer, profiles from desc.json, baseline files left out', async () => {
    const root = path.join(FIXTURES, 'rolebench');
    const { records, skips } = await readAll(rolebenchFormat, root, { root });
    expect(records.map((r) => [r.file, r.line, r.role, r.language])).toEqual([
      ['rolebench-eng/instruction-generalization/role_specific/train.jsonl', 1, 'Sherlock Holmes', 'en'],
      ['rolebench-eng/instruction-generalization/role_specific/train.jsonl', 2, 'Jack Sparrow', 'en'],
      ['rolebench-eng/instruction-generalization/role_specific/train.jsonl', 5, 'Unknown Pirate', 'en'],
      ['rolebench-zh/general/train.jsonl', 1, '孙悟空', 'zh'],
    ]);
    const holmes = records[0]!;
    expect(holmes.profile).toMatch(/^A brilliant consulting detective/);
    expect(holmes.dialogues.map((d) => d.id)).toEqual(['1-1', '1-2']);
    expect(holmes.dialogues[1]!.turns).toEqual([
      { speaker: 'user', text: 'What can you tell about a man from his hat?' },
      { speaker: 'Sherlock Holmes', text: 'Everything, Watson, if one observes rather than sees.' },
    ]);
    expect(records[2]!.profile).toBeNull();
    expect(records[3]!.profile).toMatch(/^《西游记》中的齐天大圣/);
    expect(records.every((r) => r.video === null)).toBe(true);
    expect(records.flatMap(turnsOf).some(([, text]) => text === '(baseline output)')).toBe(false);
    const file = 'rolebench-eng/instruction-generalization/role_specific/train.jsonl';
    expect(skips).toEqual([
      { source: file, line: 3, reason: 'empty dialogue: "generated" holds no non-empty answer' },
      { source: file, line: 4, reason: 'wrong type: "generated" must be an array of answers, found a string' },
      { source: file, line: 6, reason: expect.stringMatching(/^malformed JSON: /) },
    ]);
  });

  it('finds desc.json beside a single input file under the root', async () => {
    const root = path.join(FIXTURES, 'rolebench');
    const input = path.join(root, 'rolebench-eng/instruction-generalization/role_specific/train.jsonl');
    const { records } = await readAll(rolebenchFormat, input, { root });
    expect(records[1]!.profile).toMatch(/^An eccentric, witty pirate/);
  });
});

describe('MMRole-Data', () => {
  const root = path.join(FIXTURES, 'mmrole');

  it('structures the prompt into turns; images become one-frame videos; bad samples are skipped', async () => {
    const { records, skips } = await readAll(mmroleFormat, root, { root });
    expect(records.map((r) => [r.id, r.video, r.media, r.role, r.language])).toEqual([
      ['Thor/The_Avengers/11.jpg', 'images/The_Avengers/11.jpg', 'image', 'Thor', 'en'],
      ['Iron Man/COCO/train2017/000000554381.jpg', 'images/COCO/train2017/000000554381.jpg', 'image', 'Iron Man', 'en'],
      ['Vision/COCO/train2017/000000470745.jpg', 'images/COCO/train2017/000000470745.jpg', 'image', 'Vision', 'en'],
    ]);
    const [thor, ironMan, vision] = records as [SourceRecord, SourceRecord, SourceRecord];
    // Profile from profiles/**/profiles.json when the role is there, else the prompt's description.
    expect(thor.profile).toBe('### Introduction\nThor Odinson, the Norse god of thunder, prince of Asgard and an Avenger.');
    expect(vision.profile).toMatch(/^### Brief Introduction\nVision/);
    // The image's auxiliary information is the row's summary.
    expect(thor.summary).toMatch(/^- /);
    expect(thor.dialogues).toHaveLength(1);
    expect(thor.dialogues[0]!.id).toBe('Thor_comment_script_10_1');
    expect(turnsOf(thor).map(([s]) => s)).toEqual(['a curious human', 'Thor']);
    expect(turnsOf(thor)[0]![1]).toBe('What does this picture prompt you to think about?');
    // Multi-turn history: `[human]` and `[Iron Man]` lines become alternating turns.
    expect(turnsOf(ironMan).map(([s]) => s)).toEqual([
      'a curious human', 'Iron Man', 'a curious human', 'Iron Man', 'a curious human', 'Iron Man', 'a curious human', 'Iron Man',
    ]);
    // `Please initiate the conversation`: the role speaks first.
    expect(turnsOf(vision).map(([s]) => s)).toEqual(['Vision']);
    expect(skips).toEqual([
      { source: 'data/test/mmrole_sample.json', line: 4, reason: 'missing image: images/COCO/train2017/does_not_exist.jpg (sample 孙悟空_comment_COCO_42_1)' },
      { source: 'data/test/mmrole_sample.json', line: 5, reason: 'missing field: "role"' },
      { source: 'data/test/mmrole_sample.json', line: 6, reason: 'empty turn: sample broken_empty_answer turn 2: empty text' },
    ]);
  });

  it('keeps a sample whose image is missing as text-only with missingMedia: text-only', async () => {
    const { records, skips } = await readAll(mmroleFormat, root, { root, missingMedia: 'text-only' });
    const wukong = records.find((r) => r.role === '孙悟空')!;
    expect([wukong.video, wukong.media]).toEqual([null, undefined]);
    expect(wukong.language).toBe('zh');
    expect(skips.map((s) => s.line)).toEqual([5, 6]);
  });

  it('reads the real MMRole-Eval review files (extra fields ignored)', async () => {
    const dir = path.join(MMROLE_EVAL, 'reviews/gpt-4-turbo');
    const strict = await readAll(mmroleFormat, dir, { root: dir });
    // No images are shipped with the reviews: each sample is skipped, naming its image.
    expect(strict.records).toHaveLength(0);
    expect(strict.skips).toHaveLength(216);
    expect(strict.skips[0]!.reason).toMatch(/^missing image: COCO\/train2017\/\d+\.jpg \(sample \S+\)$/);
    const { records, skips } = await readAll(mmroleFormat, dir, { root: dir, missingMedia: 'text-only' });
    expect(skips).toEqual([]);
    expect(records).toHaveLength(216);
    for (const r of records) {
      const turns = r.dialogues[0]!.turns;
      expect(turns.at(-1)!.speaker).toBe(r.role);
      expect(turns.every((t) => t.text.trim() !== '')).toBe(true);
      expect(r.profile).toBeTruthy();
    }
    // The evaluated model's `answer` is not training data: the role's last turn is the ground truth.
    const items = (await Promise.all(
      ['comment', 'human-role', 'inter-role'].map(async (s) => JSON.parse(await fs.readFile(path.join(dir, `${s}_test.json`), 'utf8'))),
    )).flat() as { id: string; conversations: { value: string; answer?: string }[] }[];
    const byId = new Map(records.map((r) => [r.dialogues[0]!.id, r]));
    expect(byId.size).toBe(216);
    for (const item of items) {
      const turns = byId.get(item.id)!.dialogues[0]!.turns;
      expect(turns.at(-1)!.text).toBe(item.conversations[1]!.value.trim());
    }
    expect(records.filter((r) => r.summary).length).toBeGreaterThan(0);
    expect(new Set(records.map((r) => r.language))).toEqual(new Set(['en', 'zh']));
  });
});
