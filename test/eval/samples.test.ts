import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readAnswersFile } from '../../src/index.js';
import { MMROLE_METRICS, VIDEO2ROLEPLAY_METRICS, judgePromptText, taskInstruction } from '../../src/eval/index.js';

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-answers-'));
async function file(name: string, text: string): Promise<string> {
  const f = path.join(tmp, name);
  await fs.writeFile(f, text);
  return f;
}

describe('answers files', () => {
  it('reads the flat layout from JSON lines, with profile, video summary and history in the question', async () => {
    const f = await file(
      'flat.jsonl',
      [
        JSON.stringify({
          id: 'clip-7/d0',
          role: 'Professor Pixel',
          profile: 'A cheerful teacher of colours.',
          summary: 'A red circle moves left.',
          history: [{ speaker: 'viewer', text: 'Hi!' }, { speaker: 'Professor Pixel', text: 'Hello, class!' }],
          question: 'Which way is it going?',
          reference: 'Left, my friend!',
          answer: 'It glides to the left.',
        }),
        '',
        JSON.stringify({ id: 'clip-8/d0', role: '小橘', question: '这是什么颜色？', reference: '蓝色！', answer: '  ' }),
      ].join('\n'),
    );
    const [a, b] = await readAnswersFile(f);
    expect(a!.question).toBe(
      "The profile of Professor Pixel:\nA cheerful teacher of colours.\n\nWhat the video shows:\nA red circle moves left.\n\n" +
        'The conversation so far:\nviewer: Hi!\nProfessor Pixel: Hello, class!\n\nThe other party says:\nWhich way is it going?',
    );
    expect([a!.reference, a!.answer]).toEqual(['Left, my friend!', 'It glides to the left.']);
    // An empty answer is kept, to be reported as unjudged.
    expect(b!.answer).toBeNull();
  });

  it("reads MMRole's answers layout and builds MMRole's task instruction", async () => {
    const f = await file(
      'mmrole.json',
      JSON.stringify([
        {
          id: 'x1',
          role: 'Loki',
          script: 'The Avengers',
          other_role: 'Iron Man',
          image: 'COCO/1.jpg',
          conversations: [
            { from: 'user', value: 'Q?' },
            { from: 'assistant', value: 'GT', answer: 'A' },
          ],
        },
        {
          id: 'x2',
          role: 'Maya Patel',
          script: 'Hypothetical Characters',
          other_role: 'a curious human',
          conversations: [{ from: 'user', value: 'Q2' }, { from: 'assistant', value: 'GT2' }],
        },
      ]),
    );
    const [loki, maya] = await readAnswersFile(f);
    expect(taskInstruction(loki!, 'image')).toBe(
      'The task instruction of the two models is to directly role-play as Loki from The Avengers and talk with Iron Man from The Avengers about the given image using the distinctive tone, manner and vocabulary of Loki.',
    );
    expect(taskInstruction(maya!, 'video')).toBe(
      'The task instruction of the two models is to directly role-play as Maya Patel, a person who is one of the Hypothetical Characters, and talk with a curious human about the given video using the distinctive tone, manner and vocabulary of Maya Patel.',
    );
    expect(maya!.answer).toBeNull();
    const prompt = judgePromptText(loki!, MMROLE_METRICS.metrics[4]!, MMROLE_METRICS, 'swapped');
    // Swapped: the ground truth is Model A.
    expect(prompt).toContain("## **[Model A's Response Start]**\n\nGT\n\n## **[Model A's Response End]**");
    expect(prompt).toContain("Response Accuracy: Do the responses accurately answer Iron Man's words or appropriately initiate a conversation based on the image?");
    expect(prompt.endsWith('does not affect your judgment.')).toBe(true);
    expect(VIDEO2ROLEPLAY_METRICS.metrics.map((m) => m.name)).toEqual([
      'Character Consistency', 'Knowledge Hallucination', 'Utterance Fluency', 'Tone Consistency',
      'Instruction Adherence', 'Response Accuracy', 'Video-Text Relevance', 'Human Likeness',
    ]);
  });

  it('names the file and item of bad input', async () => {
    const bad = await file('bad.jsonl', '{"id": "a", "role": "R", "question": "q", "reference": "r"}\n{"id": \n');
    await expect(readAnswersFile(bad)).rejects.toThrow(/^eval: .*bad\.jsonl line 2: not valid JSON: /);
    const missing = await file('missing.json', JSON.stringify([{ id: 'a', role: 'R', question: 'q' }]));
    await expect(readAnswersFile(missing)).rejects.toThrow(`eval: ${missing} item 1: missing field 'reference'`);
    const dup = await file('dup.json', JSON.stringify([{ id: 'a', role: 'R', question: 'q', reference: 'r' }, { id: 'a', role: 'R', question: 'q', reference: 'r' }]));
    await expect(readAnswersFile(dup)).rejects.toThrow(`eval: ${dup}: duplicate id 'a'`);
    await expect(readAnswersFile(await file('empty.jsonl', '\n'))).rejects.toThrow(/no answers in the file$/);
  });
});

describe('judge messages', () => {
  it('attach the sample image as a data URL for a multimodal judge, and name a missing one', async () => {
    const { judgeMessages } = await import('../../src/eval/index.js');
    const images = path.resolve(import.meta.dirname, '../import/fixtures/mmrole/images');
    const sample = {
      id: 's', role: 'Thor', script: 'The Avengers', otherRole: null, question: 'Q', reference: 'GT', answer: 'A',
      image: 'The_Avengers/11.jpg', source: {},
    };
    const [system, user] = await judgeMessages(sample, MMROLE_METRICS.metrics[3]!, MMROLE_METRICS, 'forward', { imageDir: images });
    expect(system!.role).toBe('system');
    const parts = user!.content as { type: string; image_url?: { url: string }; text?: string }[];
    const bytes = await fs.readFile(path.join(images, 'The_Avengers/11.jpg'));
    expect(parts[0]).toEqual({ type: 'image_url', image_url: { url: `data:image/jpeg;base64,${bytes.toString('base64')}` } });
    expect(parts[1]!.text).toContain('Image-Text Relevance: Are the responses closely related to the visual content of the image?');
    await expect(judgeMessages({ ...sample, image: 'nope.jpg' }, MMROLE_METRICS.metrics[0]!, MMROLE_METRICS, 'forward', { imageDir: images })).rejects.toThrow(
      `eval: sample 's': image ${path.join(images, 'nope.jpg')} not found (under --image-dir ${images})`,
    );
  });
});
