/**
 * Fixtures for the rating tests: a real export (clips made with ffmpeg, a symlink that leads out of
 * it), shards converted from another clip, and two systems' answers to the same questions, in
 * Chinese and English. System names are distinctive so blindness tests can look for them.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { convertExport } from '../../src/index.js';
import { ffmpeg } from '../media/helpers.js';

export const SYSTEM_A = 'SysAlpha-7b-secret';
export const SYSTEM_B = 'SysBeta-lora-secret';
export const repoRoot = path.resolve(import.meta.dirname, '../..');

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `rpv-rate-${prefix}-`));
}

/** A 4 s, 10 fps, 64x48 H.264 clip a browser plays (yuv420p): red, green, blue, white seconds. */
export async function makeClip(file: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const seg = (c: string) => `color=c=${c}:s=64x48:r=10:d=1`;
  await ffmpeg([
    '-filter_complex', `${seg('0xFF0000')}[a];${seg('0x00FF00')}[b];${seg('0x0000FF')}[c];${seg('0xFFFFFF')}[d];[a][b][c][d]concat=n=4:v=1:a=0[v]`,
    '-map', '[v]', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', file,
  ]);
}

export interface RateFixture {
  root: string;
  /** The export: videos/clip-1.mp4, videos/clip-2.mp4, videos/link.mp4 (a symlink out), annotations.jsonl. */
  exportDir: string;
  /** Shards of another export holding clip-9 (grid encoder). */
  shards: string;
  /** A file outside the export the symlink points at. */
  outside: string;
  answersA: string;
  answersB: string;
}

const dialogue = (role: string, q: string, a: string) => [{ id: 'd0', turns: [{ speaker: 'viewer', text: q }, { speaker: role, text: a }] }];

/** Build everything once per test file (about 2 s: three tiny clips and one conversion). */
export async function makeRateFixture(): Promise<RateFixture> {
  const root = await tempDir('fixture');
  const exportDir = path.join(root, 'export');
  await makeClip(path.join(exportDir, 'videos/clip-1.mp4'));
  await fs.copyFile(path.join(exportDir, 'videos/clip-1.mp4'), path.join(exportDir, 'videos/clip-2.mp4'));
  const outside = path.join(root, 'outside-secret.mp4');
  await fs.copyFile(path.join(exportDir, 'videos/clip-1.mp4'), outside);
  await fs.symlink(outside, path.join(exportDir, 'videos/link.mp4'));
  const records = [
    { id: 'clip-1', video: 'videos/clip-1.mp4', role: '小橘', dialogues: dialogue('小橘', '这是什么颜色？', '红色的！') },
    { id: 'clip-2', video: 'videos/clip-2.mp4', role: 'Professor Pixel', dialogues: dialogue('Professor Pixel', 'What colour?', 'Red!') },
  ];
  await fs.writeFile(path.join(exportDir, 'annotations.jsonl'), `${records.map((r) => JSON.stringify(r)).join('\n')}\n`);

  const other = path.join(root, 'other-export');
  await makeClip(path.join(other, 'videos/clip-9.mp4'));
  await fs.writeFile(path.join(other, 'annotations.jsonl'), `${JSON.stringify({ id: 'clip-9', video: 'videos/clip-9.mp4', role: 'Pixel', dialogues: dialogue('Pixel', 'Colour?', 'Red.') })}\n`);
  const shards = path.join(root, 'shards');
  await convertExport({ input: other, out: shards, frameSize: 32, workers: 1, minFrames: 4, maxFrames: 4 });

  // c1: Chinese, both systems (pairwise), video found in the export by video_id.
  // c2: English, both systems, video by path. c3: only system A. c4: a path out of the export.
  // c5: a symlink out of the export. c6: frames from the shards. c7: no answer at all.
  const base = {
    c1: { role: '小橘', video_id: 'clip-1', profile: '一只爱说话的橘猫，喜欢颜色。', summary: '红、绿、蓝、白四种颜色依次出现。', question: '这是什么颜色？', history: [{ speaker: 'viewer', text: '你好，小橘！' }, { speaker: '小橘', text: '喵～你好！' }] },
    c2: { role: 'Professor Pixel', video: 'videos/clip-2.mp4', profile: 'A cheerful teacher of colours.', question: 'Which colour comes last?' },
    c3: { role: 'Professor Pixel', video: 'videos/clip-1.mp4', question: 'And the first colour?' },
    c4: { role: 'Professor Pixel', video: '../outside-secret.mp4', question: 'What is outside?' },
    c5: { role: 'Professor Pixel', video: 'videos/link.mp4', question: 'Is this a link?' },
    c6: { role: 'Pixel', video_id: 'clip-9', question: 'Colour?' },
    c7: { role: 'Pixel', question: 'Anyone?' },
  };
  const answersA: Record<string, string | null> = { c1: '红色的！然后是绿色、蓝色和白色。', c2: 'White, my friend! 🧐', c3: 'Red, of course.', c4: 'Nothing.', c5: 'Yes.', c6: 'Red.', c7: null };
  const answersB: Record<string, string | null> = { c1: '是红色。', c2: 'It is white.', c3: null, c4: 'No.', c5: 'No.', c6: 'Blue.', c7: null };
  const write = async (file: string, answers: Record<string, string | null>) => {
    const lines = Object.entries(base).map(([id, b]) => JSON.stringify({ id, ...b, reference: 'ground truth', answer: answers[id] }));
    await fs.writeFile(file, `${lines.join('\n')}\n`);
  };
  const answersA_ = path.join(root, 'a.jsonl');
  const answersB_ = path.join(root, 'b.jsonl');
  await write(answersA_, answersA);
  await write(answersB_, answersB);
  return { root, exportDir, shards, outside, answersA: answersA_, answersB: answersB_ };
}
