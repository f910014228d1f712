/**
 * `writeSampleExport`: a small, realistic raw export in the rpv native format, generated from
 * nothing but ffmpeg: short clips (3–40 s, 160x120, 10 fps) in which a coloured shape crosses a
 * plain background in one direction, and bilingual dialogues in which what the role says
 * depends on the clip (the shape's colour, its direction, its shape, the background).
 *
 * Written to `<dir>`:
 * - `videos/clip-01.mp4` ...: H.264 (MPEG-4 Part 2 when the ffmpeg has no libx264), some with a
 *   sine-tone audio track;
 * - `annotations.jsonl`: one record per clip,
 *   `{id, video, role, language, platform, profile, summary, dialogues: [{id, turns: [{speaker, text}]}]}`;
 * - `facts.json`: what each clip shows and the words roles use for it (`VISUAL_WORDS`), so a
 *   demo can measure the loss on exactly the video-dependent words.
 * Same seed, same files. Summaries describe the clip without naming colour or direction, so they
 * do not leak the answers to a model that does not see the video.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { RpvError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { Mulberry32 } from '../util/random.js';
import { resolveFfmpeg } from '../media/ffmpeg.js';
import {
  BACKGROUNDS,
  COLOURS,
  DIALOGUE_WEIGHTS,
  DIRECTIONS,
  ROLES,
  SHAPES,
  VISUAL_WORDS,
  makeDialogue,
  type Background,
  type ClipFacts,
  type Colour,
  type DialogueKind,
  type Direction,
  type Lang,
  type Shape,
  type Turn,
} from './sample-dialogues.js';

export interface SampleExportOptions {
  /** Seed of every choice (facts, durations, dialogue wording). Default 1. */
  seed?: number;
  /** Number of clips. Default 24. */
  clips?: number;
  /** Dialogues per clip. Default 8. */
  dialoguesPerClip?: number;
  /** ffmpeg processes at once. Default min(2, cores). */
  concurrency?: number;
  /** Draw a progress bar on stderr. Default false. */
  progress?: boolean;
  /** Frame size and rate of the clips (shapes and offsets scale with the size). Default 160x120 at 10 fps. */
  render?: ClipRender;
}

/** `WxH` and a frame rate checked into a `ClipRender` (even sizes from 16 to 4096, 1 to 120 fps). */
export function parseClipRender(size: string, fps: number): ClipRender {
  const m = /^(\d+)x(\d+)$/.exec(size.trim());
  const [width, height] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  const ok = (v: number) => Number.isInteger(v) && v >= 16 && v <= 4096 && v % 2 === 0;
  if (!ok(width) || !ok(height)) throw new RpvError(`sample-export: --size must be WxH with even numbers from 16 to 4096, got "${size}"`);
  if (!(Number.isFinite(fps) && fps >= 1 && fps <= 120)) throw new RpvError(`sample-export: --fps must be from 1 to 120, got ${fps}`);
  return { width, height, fps };
}

/** Frame size and rate of generated clips. */
export interface ClipRender {
  width: number;
  height: number;
  fps: number;
}

export interface SampleClip extends ClipFacts {
  id: string;
  /** Path relative to the export folder. */
  video: string;
  role: string;
  language: Lang;
  hasAudio: boolean;
  bytes: number;
}

export interface SampleExportSummary {
  dir: string;
  annotationsFile: string;
  factsFile: string;
  clips: SampleClip[];
  roles: string[];
  dialogues: number;
  turns: number;
  totalDurationSec: number;
  videoBytes: number;
  videoCodec: string;
  elapsedSec: number;
}

export interface SampleRecord {
  id: string;
  video: string;
  role: string;
  language: Lang;
  platform: string;
  profile: string;
  summary: string;
  dialogues: Array<{ id: string; turns: Turn[] }>;
}

const WIDTH = 160;
const HEIGHT = 120;
const FPS = 10;
const COLOUR_HEX: Record<Colour, string> = { red: '0xDD2222', green: '0x22AA33', blue: '0x2255DD', yellow: '0xEEDD22' };
const BACKGROUND_HEX: Record<Background, string> = { black: '0x101010', white: '0xF0F0F0', gray: '0x808080' };
const SHAPE_SIZE: Record<Shape, [number, number]> = { square: [20, 20], bar: [36, 12] };
const DURATIONS_24 = [3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40];

/** The clips and records a seed gives, without writing anything. */
export function planSampleExport(options: SampleExportOptions = {}): { clips: Omit<SampleClip, 'bytes'>[]; records: SampleRecord[] } {
  const { seed = 1, clips: count = 24, dialoguesPerClip = 8 } = options;
  if (!(Number.isInteger(count) && count >= 1 && count <= 999)) throw new RpvError(`sample-export: clips must be an integer from 1 to 999, got ${count}`);
  if (!(Number.isInteger(dialoguesPerClip) && dialoguesPerClip >= 2)) {
    throw new RpvError(`sample-export: dialoguesPerClip must be an integer >= 2 (one direction and one colour dialogue per clip), got ${dialoguesPerClip}`);
  }
  if (!Number.isInteger(seed)) throw new RpvError(`sample-export: seed must be an integer, got ${seed}`);
  const rng = new Mulberry32(seed);
  // Every colour x direction pair, repeated to fill the clips, shuffled: facts independent of role.
  // Blocks of all 16 pairs, each shuffled: 16 clips cover every pair once, 24 clips 1.5 times.
  const chosen: Array<[Colour, Direction]> = [];
  while (chosen.length < count) {
    const block: Array<[Colour, Direction]> = [];
    for (const c of COLOURS) for (const d of DIRECTIONS) block.push([c, d]);
    chosen.push(...rng.shuffle(block));
  }
  chosen.length = count;
  const durations = rng.shuffle(
    count === 24 ? [...DURATIONS_24] : Array.from({ length: count }, (_, i) => (count === 1 ? 10 : Math.round(3 + (37 * i) / (count - 1)))),
  );
  const perRole = new Map<string, number>();
  const clips: Omit<SampleClip, 'bytes'>[] = [];
  const records: SampleRecord[] = [];
  for (let i = 0; i < count; i++) {
    const role = ROLES[i % ROLES.length]!;
    const k = perRole.get(role.name) ?? 0;
    perRole.set(role.name, k + 1);
    const language = role.languages[k % role.languages.length]!;
    const id = `clip-${String(i + 1).padStart(2, '0')}`;
    const [colour, direction] = chosen[i]!;
    const facts: ClipFacts = { colour, direction, shape: rng.pick(SHAPES), background: rng.pick(BACKGROUNDS), durationSec: durations[i]! };
    const clip = { id, video: `videos/${id}.mp4`, role: role.name, language, hasAudio: i % 3 === 1, ...facts };
    clips.push(clip);
    const kinds: DialogueKind[] = ['direction', 'colour'];
    while (kinds.length < dialoguesPerClip) kinds.push(rng.weighted(DIALOGUE_WEIGHTS));
    rng.shuffle(kinds);
    records.push({
      id,
      video: clip.video,
      role: role.name,
      language,
      platform: role.platform,
      profile: role.profile,
      summary:
        language === 'zh'
          ? `一段${facts.durationSec}秒的小动画：纯色背景上，一个简单的图形从画面一侧匀速移动到另一侧。`
          : `A ${facts.durationSec}-second animation: one simple shape crosses a plain background at a steady pace.`,
      dialogues: kinds.map((kind, j) => ({ id: `${id}-d${j + 1}`, turns: makeDialogue(kind, role, facts, language, rng) })),
    });
  }
  return { clips, records };
}

/** Generate the clips with ffmpeg and write the export (see the module comment). */
export async function writeSampleExport(dir: string, options: SampleExportOptions = {}): Promise<SampleExportSummary> {
  const started = Date.now();
  const { clips, records } = planSampleExport(options);
  const { ffmpegPath } = await resolveFfmpeg();
  const videosDir = path.join(dir, 'videos');
  await fs.mkdir(videosDir, { recursive: true });
  // Leftovers of an earlier export into the same folder: clips it no longer lists, interrupted temp files.
  const planned = new Set(clips.map((c) => path.basename(c.video)));
  for (const name of await fs.readdir(videosDir)) {
    if ((/^clip-\d+\.mp4$/.test(name) && !planned.has(name)) || /^\.clip-\d+\.mp4\.\d+\.tmp$/.test(name)) {
      await fs.rm(path.join(videosDir, name), { force: true });
    }
  }
  const concurrency = Math.max(1, options.concurrency ?? Math.min(2, os.availableParallelism()));
  const progress = options.progress ? new Progress({ label: 'sample-export', total: clips.length, unit: 'clips' }) : undefined;
  let codec: 'libx264' | 'mpeg4' = 'libx264';
  const written: SampleClip[] = new Array(clips.length);
  let next = 0;
  const worker = async () => {
    while (next < clips.length) {
      const i = next++;
      const clip = clips[i]!;
      const file = path.join(dir, clip.video);
      try {
        await renderClip(ffmpegPath, clip, file, codec, options.render);
      } catch (err) {
        if (codec === 'libx264' && err instanceof RpvError && /Unknown encoder|libx264/i.test(err.message)) {
          codec = 'mpeg4';
          await renderClip(ffmpegPath, clip, file, codec, options.render);
        } else {
          throw err;
        }
      }
      written[i] = { ...clip, bytes: (await fs.stat(file)).size };
      progress?.tick(1);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, clips.length) }, worker));
  progress?.finish();
  const annotationsFile = path.join(dir, 'annotations.jsonl');
  await writeFileAtomic(annotationsFile, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const factsFile = path.join(dir, 'facts.json');
  const facts = {
    seed: options.seed ?? 1,
    words: VISUAL_WORDS,
    clips: written.map(({ id, video, role, language, colour, direction, shape, background, durationSec, hasAudio }) => ({
      id, video, role, language, colour, direction, shape, background, durationSec, hasAudio,
    })),
  };
  await writeFileAtomic(factsFile, JSON.stringify(facts, null, 2) + '\n');
  const dialogues = records.reduce((s, r) => s + r.dialogues.length, 0);
  const turns = records.reduce((s, r) => s + r.dialogues.reduce((t, d) => t + d.turns.length, 0), 0);
  return {
    dir,
    annotationsFile,
    factsFile,
    clips: written,
    roles: [...new Set(records.map((r) => r.role))],
    dialogues,
    turns,
    totalDurationSec: written.reduce((s, c) => s + c.durationSec, 0),
    videoBytes: written.reduce((s, c) => s + c.bytes, 0),
    videoCodec: codec === 'libx264' ? 'h264' : 'mpeg4',
    elapsedSec: (Date.now() - started) / 1000,
  };
}

/** ffmpeg arguments rendering one clip: a lavfi colour field, a moving overlay, optional tone. */
export function buildClipArgs(
  clip: ClipFacts & { hasAudio: boolean },
  output: string,
  codec: 'libx264' | 'mpeg4' = 'libx264',
  render: ClipRender = { width: WIDTH, height: HEIGHT, fps: FPS },
): string[] {
  const D = clip.durationSec;
  const { width: WIDTH_, height: HEIGHT_, fps: FPS_ } = render;
  const k = Math.min(WIDTH_ / WIDTH, HEIGHT_ / HEIGHT);
  const even = (v: number) => Math.max(2, 2 * Math.round((v * k) / 2));
  const [w, h] = SHAPE_SIZE[clip.shape].map(even) as [number, number];
  // The perpendicular coordinate is fixed per clip (from its facts, so it is deterministic), with a small wobble.
  const across = (clip.colour.length * 7 + clip.durationSec * 5) % 60;
  const horizontal = clip.direction === 'left' || clip.direction === 'right';
  const progress = clip.direction === 'right' || clip.direction === 'down' ? `t/${D}` : `(1-t/${D})`;
  const px = (v: number) => (k === 1 ? String(v) : String(Math.round(v * k)));
  const x = horizontal ? `(W-w)*${progress}` : `${px(20 + across)}+${px(3)}*sin(t*2)`;
  const y = horizontal ? `${px(20 + (across % 50))}+${px(3)}*sin(t*2)` : `(H-h)*${progress}`;
  const graph =
    `color=c=${BACKGROUND_HEX[clip.background]}:s=${WIDTH_}x${HEIGHT_}:r=${FPS_}:d=${D},noise=alls=4:allf=t[bg];` +
    `color=c=${COLOUR_HEX[clip.colour]}:s=${w}x${h}:r=${FPS_}:d=${D}[fg];` +
    `[bg][fg]overlay=x='${x}':y='${y}':eval=frame:shortest=1[v]` +
    (clip.hasAudio ? `;sine=frequency=${220 + 110 * COLOURS.indexOf(clip.colour)}:duration=${D}[a]` : '');
  const video = codec === 'libx264' ? ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '28'] : ['-c:v', 'mpeg4', '-q:v', '5'];
  return [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    '-filter_complex', graph,
    '-map', '[v]',
    ...(clip.hasAudio ? ['-map', '[a]', '-c:a', 'aac', '-b:a', '32k'] : []),
    ...video,
    '-pix_fmt', 'yuv420p', '-threads', '1',
    '-fflags', '+bitexact', '-flags:v', '+bitexact', ...(clip.hasAudio ? ['-flags:a', '+bitexact'] : []),
    '-f', 'mp4', output,
  ];
}

async function renderClip(ffmpegPath: string, clip: Omit<SampleClip, 'bytes'>, file: string, codec: 'libx264' | 'mpeg4', render?: ClipRender): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(ffmpegPath, buildClipArgs(clip, tmp, codec, render), { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) resolve();
        else reject(new RpvError(`sample-export: ffmpeg failed on ${clip.id} (exit ${code}): ${err.trim().split('\n').slice(-1)[0] ?? ''}`));
      });
    });
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}
