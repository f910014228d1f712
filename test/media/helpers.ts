import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveFfmpeg } from '../../src/media/ffmpeg.js';

/** Run the resolved ffmpeg with `args`; rejects with its stderr on failure. */
export async function ffmpeg(args: string[]): Promise<void> {
  const { ffmpegPath } = await resolveFfmpeg();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(ffmpegPath, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg ${args.join(' ')}: ${err}`))));
  });
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `rpv-${prefix}-`));
}

/** A 4 s, 10 fps, 64x48 clip: red [0,1), green [1,2), blue [2,3), white [3,4) seconds. */
export async function makeColourSteps(file: string, extra: string[] = []): Promise<void> {
  const seg = (c: string) => `color=c=${c}:s=64x48:r=10:d=1`;
  await ffmpeg([
    '-filter_complex', `${seg('0xFF0000')}[a];${seg('0x00FF00')}[b];${seg('0x0000FF')}[c];${seg('0xFFFFFF')}[d];[a][b][c][d]concat=n=4:v=1:a=0[v]`,
    '-map', '[v]', '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '0', '-pix_fmt', 'yuv444p', '-g', '5', ...extra, file,
  ]);
}

/** Mean colour of an RGB24 frame. */
export function meanColour(frame: Uint8Array): [number, number, number] {
  let r = 0, g = 0, b = 0;
  for (let i = 0; i < frame.length; i += 3) {
    r += frame[i]!;
    g += frame[i + 1]!;
    b += frame[i + 2]!;
  }
  const n = frame.length / 3;
  return [Math.round(r / n), Math.round(g / n), Math.round(b / n)];
}

/** Name of the nearest of the four test colours. */
export function colourName(frame: Uint8Array): string {
  const [r, g, b] = meanColour(frame);
  const refs: Record<string, [number, number, number]> = { red: [255, 0, 0], green: [0, 255, 0], blue: [0, 0, 255], white: [255, 255, 255] };
  let best = '';
  let bestD = Infinity;
  for (const [name, [R, G, B]] of Object.entries(refs)) {
    const d = Math.abs(r - R) + Math.abs(g - G) + Math.abs(b - B);
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}
