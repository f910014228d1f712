import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { command } from '../../src/commands/sample-export.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

describe('rpv sample-export', () => {
  it('writes the export and prints what it wrote', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-sample-cmd-'));
    dirs.push(dir);
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      const handler = command.handler as (args: Record<string, unknown>) => Promise<void>;
      await handler({ dir, seed: 2, clips: 3, dialogues: 4, json: false, _: [], $0: 'rpv' });
    } finally {
      spy.mockRestore();
    }
    const lines = out.split('\n');
    expect(lines[0]).toBe(`wrote ${dir}`);
    expect(lines[1]).toMatch(/^ {2}annotations\.jsonl {2}3 records, 12 dialogues, \d+ turns, roles: 小橘, Professor Pixel, 阿树$/);
    expect(lines.filter((l) => /^ {2}clip-0\d /.test(l))).toHaveLength(3);
    expect((await fs.readdir(path.join(dir, 'videos'))).sort()).toEqual(['clip-01.mp4', 'clip-02.mp4', 'clip-03.mp4']);
  });
});
