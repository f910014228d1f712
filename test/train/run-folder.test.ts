// A run folder belongs to one trainer and one run: a lock names its holder, a folder holding
// another run needs resume= or overwrite_output_dir=true, and a write that fails (a full disk)
// names the file and step, leaves no temporary file and leaves the folder resumable.
import { spawn, spawnSync } from 'node:child_process';
import nodeFs, { existsSync, mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseRecipe, readMetrics, train } from '../../src/index.js';
import { recipeText, writeDataset, writeModel } from './helpers.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rpv-run-folder-'));
const shards = path.join(root, 'shards');
const model = path.join(root, 'model');
const common = ['train.max_steps=4', 'checkpoint.every_steps=2', 'checkpoint.keep_last=3', 'eval.every_steps=0'];
const recipeFor = (out: string, overrides: string[] = []) => parseRecipe(recipeText(out, shards, model), [...common, ...overrides], 'test.yaml');
const host = os.hostname();

let reference: number[] = [];

beforeAll(async () => {
  await writeDataset(shards);
  await writeModel(model);
  reference = (await train(recipeFor(path.join(root, 'reference')), { progressStream: null, log: () => {} })).losses;
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Every file or folder under `dir` whose name ends in .tmp. */
async function temporaries(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true });
  return entries.filter((e) => e.endsWith('.tmp'));
}

async function run(out: string, overrides: string[] = []): Promise<{ losses: number[]; log: string[] }> {
  const log: string[] = [];
  const result = await train(recipeFor(out, overrides), { progressStream: null, log: (l) => log.push(l) });
  return { losses: result.losses, log };
}

describe('one trainer per output folder', () => {
  it('a second trainer on a folder in use is refused, naming the holder', async () => {
    const out = path.join(root, 'two');
    const first = run(out, ['train.max_steps=6']);
    const lock = path.join(out, 'train.lock');
    let started = '';
    for (let i = 0; i < 400 && !started; i++) {
      await new Promise((r) => setTimeout(r, 5));
      started = (JSON.parse((await fs.readFile(lock, 'utf8').catch(() => '')) || '{}') as { started?: string }).started ?? '';
    }
    await expect(run(out)).rejects.toThrow(
      `train: ${out} is in use by process ${process.pid} on ${host} (since ${started}, ${lock}); wait for that run to end or choose another output_dir`,
    );
    expect((await first).losses).toHaveLength(6);
    expect(existsSync(lock)).toBe(false);
    const steps = (await readMetrics(path.join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train').map((m) => m.step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('a lock held by a live process of this host is respected', async () => {
    const out = path.join(root, 'held');
    await fs.mkdir(out, { recursive: true });
    const holder = spawn('sleep', ['30']);
    try {
      const lock = path.join(out, 'train.lock');
      await fs.writeFile(lock, JSON.stringify({ pid: holder.pid, host, started: '2026-01-01T00:00:00.000Z' }));
      await expect(run(out)).rejects.toThrow(
        `train: ${out} is in use by process ${holder.pid} on ${host} (since 2026-01-01T00:00:00.000Z, ${lock}); wait for that run to end or choose another output_dir`,
      );
      expect(existsSync(lock)).toBe(true);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a stale lock of a process that is gone is taken over, saying so', async () => {
    const out = path.join(root, 'stale');
    await fs.mkdir(out, { recursive: true });
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const pid = Number(gone.stdout);
    const lock = path.join(out, 'train.lock');
    await fs.writeFile(lock, JSON.stringify({ pid, host, started: '2026-01-01T00:00:00.000Z' }));
    const { losses, log } = await run(out);
    expect(log[0]).toBe(`train: ${lock} was left by process ${pid} on ${host}, which is no longer running; taking the folder over`);
    expect(losses).toEqual(reference);
    expect(existsSync(lock)).toBe(false);
  });
});

describe('a lock held from another host', () => {
  const other = 'lost-node.example';
  const lockOf = async (name: string): Promise<{ out: string; lock: string }> => {
    const out = path.join(root, name);
    await fs.mkdir(out, { recursive: true });
    const lock = path.join(out, 'train.lock');
    await fs.writeFile(lock, JSON.stringify({ pid: 4242, host: other, started: '2026-01-01T00:00:00.000Z' }));
    return { out, lock };
  };

  it('is refused by default, naming host and pid and how to take it over', async () => {
    const { out, lock } = await lockOf('other-host');
    await expect(run(out)).rejects.toThrow(
      `train: ${out} is in use by process 4242 on ${other} (since 2026-01-01T00:00:00.000Z, ${lock}); wait for that run to end or choose another output_dir; ` +
        `${host} cannot see processes of ${other}: if that run is gone, run again with break_lock=true to take the folder over`,
    );
    expect(JSON.parse(await fs.readFile(lock, 'utf8'))).toMatchObject({ pid: 4242, host: other });
  });

  it('break_lock=true takes it over, saying so, and the saved recipe does not keep it', async () => {
    const { out, lock } = await lockOf('broken');
    const { losses, log } = await run(out, ['break_lock=true']);
    expect(log[0]).toBe(`train: break_lock=true: taking over ${lock} from process 4242 on ${other} (since 2026-01-01T00:00:00.000Z), which you say is gone`);
    expect(losses).toEqual(reference);
    expect(existsSync(lock)).toBe(false);
    expect(await fs.readFile(path.join(out, 'recipe.yaml'), 'utf8')).toContain('break_lock: false');
  });

  it('break_lock=true never takes the lock of a process still running on this host', async () => {
    const out = path.join(root, 'held-break');
    await fs.mkdir(out, { recursive: true });
    const holder = spawn('sleep', ['30']);
    try {
      const lock = path.join(out, 'train.lock');
      await fs.writeFile(lock, JSON.stringify({ pid: holder.pid, host, started: '2026-01-01T00:00:00.000Z' }));
      await expect(run(out, ['break_lock=true'])).rejects.toThrow(
        `train: ${out} is in use by process ${holder.pid} on ${host} (since 2026-01-01T00:00:00.000Z, ${lock}); wait for that run to end or choose another output_dir; ` +
          'break_lock=true takes over only a lock of another host, and this process still runs here',
      );
      expect(existsSync(lock)).toBe(true);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('a folder holding another run', () => {
  it('is refused without resume= or overwrite_output_dir=true, and left as it was', async () => {
    const out = path.join(root, 'finished');
    await run(out);
    const metrics = await fs.readFile(path.join(out, 'metrics.jsonl'), 'utf8');
    await expect(run(out, ['optimizer.lr=0.02'])).rejects.toThrow(
      `train: output_dir ${out} holds another run (metrics.jsonl to step 4, 2 checkpoints up to step-000004, a final adapter/); continue it with resume=${out}, replace it with overwrite_output_dir=true, or choose another output_dir`,
    );
    expect(await fs.readFile(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(metrics);
  });

  it('overwrite_output_dir=true replaces the old run: keep_last keeps the new run\'s checkpoints', async () => {
    const out = path.join(root, 'replaced');
    await run(out, ['train.max_steps=6', 'checkpoint.every_steps=1', 'checkpoint.keep_last=6']);
    const { losses, log } = await run(out, ['overwrite_output_dir=true', 'checkpoint.keep_last=2']);
    expect(log).toContain(`train: overwrite_output_dir=true: removed the run that was in ${out} (metrics.jsonl to step 6, 6 checkpoints up to step-000006, a final adapter/)`);
    expect(losses).toEqual(reference);
    expect((await fs.readdir(path.join(out, 'checkpoints'))).sort()).toEqual(['latest', 'step-000002', 'step-000004']);
    expect((await readMetrics(path.join(out, 'metrics.jsonl'))).filter((m) => m.type === 'train').map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(await fs.readFile(path.join(out, 'recipe.yaml'), 'utf8')).toContain('overwrite_output_dir: false');
  });
});

/** Make writes of temporary files whose path contains `part` fail with ENOSPC halfway through. */
function diskFullFor(part: string): void {
  const realOpen = nodeFs.promises.open;
  vi.spyOn(nodeFs.promises, 'open').mockImplementation(async (file, flags, mode) => {
    const handle = await realOpen(file, flags, mode);
    if (flags !== 'w' || !String(file).includes(part)) return handle;
    return new Proxy(handle, {
      get(target, prop) {
        if (prop === 'writeFile') {
          return async (data: string | Uint8Array) => {
            const bytes = typeof data === 'string' ? Buffer.from(data) : data;
            await target.write(bytes.subarray(0, bytes.length >> 1));
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
          };
        }
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  });
}

describe('a full disk', () => {
  it('a checkpoint that cannot be written names the file and step, leaves no .tmp, and the run resumes', async () => {
    const out = path.join(root, 'full');
    diskFullFor(`.step-000004.${process.pid}.tmp/.trainable.safetensors.`);
    await expect(run(out)).rejects.toThrow(
      `train: step 4: cannot write ${path.join(out, 'checkpoints', 'step-000004', 'trainable.safetensors')}: ENOSPC: no space left on device, write; the partial checkpoint was removed and ${out} resumes from step-000002 (make room, then run again with resume=${out})`,
    );
    vi.restoreAllMocks();
    expect(await temporaries(out)).toEqual([]);
    expect(existsSync(path.join(out, 'train.lock'))).toBe(false);
    const { losses } = await run(out, [`resume=${out}`]);
    expect(losses).toEqual(reference.slice(2));
  });

  it('a file of the checkpoint\'s adapter that cannot be written is named as well', async () => {
    const out = path.join(root, 'full-adapter');
    diskFullFor(`.step-000002.${process.pid}.tmp/adapter/.adapter_model.safetensors.`);
    await expect(run(out)).rejects.toThrow(
      `train: step 2: cannot write ${path.join(out, 'checkpoints', 'step-000002', 'adapter', 'adapter_model.safetensors')}: ENOSPC: no space left on device, write; the partial checkpoint was removed; ${out} has no checkpoint yet (make room, then start again with overwrite_output_dir=true)`,
    );
    expect(await temporaries(out)).toEqual([]);
    vi.restoreAllMocks();
    expect((await run(out, ['overwrite_output_dir=true'])).losses).toEqual(reference);
  });

  it('a metrics line that cannot be appended names the file and step', async () => {
    const out = path.join(root, 'full-metrics');
    const realAppend = nodeFs.promises.appendFile;
    vi.spyOn(nodeFs.promises, 'appendFile').mockImplementation(async (file, data, options) => {
      if (String(data).includes('"step":3,')) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return realAppend(file, data, options);
    });
    await expect(run(out)).rejects.toThrow(`train: step 3: cannot append to ${path.join(out, 'metrics.jsonl')}: ENOSPC: no space left on device, write`);
    vi.restoreAllMocks();
    const { losses } = await run(out, [`resume=${out}`]);
    expect(losses).toEqual(reference.slice(2));
  });

  it('the run folder\'s recipe.yaml that cannot be written is named and its temporary file removed', async () => {
    const out = path.join(root, 'full-recipe');
    diskFullFor(`${out}/.recipe.yaml.`);
    await expect(run(out)).rejects.toThrow(`train: cannot write ${path.join(out, 'recipe.yaml')}: ENOSPC: no space left on device, write`);
    expect(await temporaries(out)).toEqual([]);
  });

  it('temporary files an earlier process left are removed when a trainer starts', async () => {
    const out = path.join(root, 'leftovers');
    await run(out, ['train.max_steps=2']);
    await fs.mkdir(path.join(out, 'checkpoints', '.step-000003.99999.tmp'));
    await fs.writeFile(path.join(out, 'checkpoints', '.step-000003.99999.tmp', 'trainable.safetensors'), 'half');
    await fs.writeFile(path.join(out, 'checkpoints', '.latest.99999.0a1b2c3d.tmp'), 'step-');
    await fs.writeFile(path.join(out, '.recipe.yaml.99999.0a1b2c3d.tmp'), 'output_dir:');
    const { log } = await run(out, [`resume=${out}`]);
    expect(log[0]).toBe(
      `train: removed 3 temporary files an earlier process left in ${out}: .recipe.yaml.99999.0a1b2c3d.tmp, checkpoints/.latest.99999.0a1b2c3d.tmp, checkpoints/.step-000003.99999.tmp`,
    );
    expect(await temporaries(out)).toEqual([]);
  });
});
