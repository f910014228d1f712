import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAnswersSource, readRateItems } from '../../src/rate/index.js';
import { tempDir } from './fixtures.js';

const dir = await tempDir('items');
async function file(name: string, lines: (string | object)[]): Promise<string> {
  const f = path.join(dir, name);
  await fs.writeFile(f, `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`);
  return f;
}
const flat = (id: string, answer: string | null, extra: object = {}) => ({ id, role: 'Pixel', question: `Question ${id}?`, reference: 'ref', answer, ...extra });

describe('answers for rating', () => {
  it('names systems by name=file or by the path, and groups answers by item id', async () => {
    expect(parseAnswersSource('base=runs/a/answers.json')).toEqual({ system: 'base', file: 'runs/a/answers.json' });
    expect(parseAnswersSource('runs/x=1/answers.json')).toEqual({ file: 'runs/x=1/answers.json' });
    const a = await file('a.jsonl', [flat('q1', 'A1'), flat('q2', 'A2')]);
    const b = await file('b.json', []);
    await fs.writeFile(b, JSON.stringify([flat('q2', 'B2'), flat('q3', 'B3')]));
    const r = await readRateItems([{ file: a }, { system: 'beta', file: b }]);
    expect(r.items.map((i) => [i.id, i.mode, i.answers.map((x) => `${x.system}:${x.text}`)])).toEqual([
      ['q1', 'scores', [`${path.normalize(a)}:A1`]],
      ['q2', 'pairwise', [`${path.normalize(a)}:A2`, 'beta:B2']],
      ['q3', 'scores', ['beta:B3']],
    ]);
    expect(r.items[1]!.answers[1]!.where).toBe(`${b} item 1`);
    expect([r.read, r.systems]).toEqual([4, [path.normalize(a), 'beta'].sort()]);
  });

  it("takes several systems' answers from one item, and needs no reference", async () => {
    const f = await file('multi.jsonl', [
      { id: 'q1', role: 'Pixel', question: 'Hi?', answers: { base: 'Hello.', lora: 'Hi there!', empty: '  ' } },
      { id: 'q2', role: 'Pixel', question: 'Bye?', answers: [{ system: 'base', answer: 'Bye.' }, { system: 'lora', answer: 'See you!' }, { system: 'x', answer: 'Ciao.' }] },
    ]);
    const r = await readRateItems([{ file: f }]);
    expect(r.items.map((i) => [i.id, i.mode, i.answers.map((x) => x.system)])).toEqual([
      ['q1', 'pairwise', ['base', 'lora']],
      ['q2', 'scores', ['base', 'lora', 'x']],
    ]);
  });

  it('reads the MMRole layout and keeps the question block whole', async () => {
    const f = await file('mmrole.jsonl', [
      { id: 'm1', role: 'Iron Man', script: 'The Avengers', other_role: 'a curious human', image: 'COCO/1.jpg', conversations: [{ from: 'user', value: 'Profile...\n\nWhat do you see?' }, { from: 'assistant', value: 'gt', answer: 'A suit.' }] },
    ]);
    const [item] = (await readRateItems([{ file: f }])).items;
    expect(item).toMatchObject({ id: 'm1', role: 'Iron Man', script: 'The Avengers', question: 'Profile...\n\nWhat do you see?', image: 'COCO/1.jpg', mode: 'scores' });
  });

  it('reports every malformed line of every file with its line number, and serves nothing', async () => {
    const a = await file('bad-a.jsonl', [flat('q1', 'ok'), '{"id": "q2", "role": ', '', { id: 'q3', question: 'No role?', answer: 'x' }, flat('q1', 'again')]);
    const b = await file('bad-b.jsonl', [flat('q1', 'fine'), { ...flat('q4', 'x'), history: [{ who: 'viewer' }] }, flat('q5', 'y', { answers: { s: 'x' } })]);
    const c = await file('bad-c.jsonl', [{ ...flat('q1', 'other'), question: 'A different question?' }]);
    const err = await readRateItems([{ file: a }, { file: b }, { file: c }]).catch((e: Error) => e);
    expect((err as Error).message).toBe(
      [
        'rate: 6 problems in the answers:',
        `  ${a} line 2: not valid JSON: Unexpected end of JSON input`,
        `  ${a} line 4: missing field 'role'`,
        `  ${a} line 5: duplicate id 'q1' in ${a}`,
        `  ${b} line 2: history turn 1: expected {speaker, text}`,
        `  ${b} line 3: give 'answer' or 'answers', not both`,
        `  ${c} line 1: item 'q1' has a different question than at ${a} line 1`,
      ].join('\n'),
    );
  });

  it('names the single bad line on its own', async () => {
    const a = await file('one-bad.jsonl', [flat('q1', 'ok'), 'not json']);
    await expect(readRateItems([{ file: a }])).rejects.toThrow(new RegExp(`^rate: ${a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line 2: not valid JSON: `));
  });

  it('refuses a file with nothing to rate', async () => {
    const a = await file('none.jsonl', [flat('q1', null), flat('q2', '  ')]);
    await expect(readRateItems([{ file: a }])).rejects.toThrow('rate: nothing to rate: none of the 2 items has an answer');
    await expect(readRateItems([{ file: path.join(dir, 'missing.jsonl') }])).rejects.toThrow(`rate: cannot read answers file ${path.join(dir, 'missing.jsonl')}: ENOENT`);
  });
});
