import type { CommandModule } from 'yargs';
import { errorMessage } from '../util/errors.js';

interface EnvArgs {
  json?: boolean;
  backend?: string;
}

/** Run one probe; a failing probe becomes `{ error }` so `rpv env` always prints everything. */
async function probe<T>(fn: () => Promise<T>): Promise<T | { error: string }> {
  try {
    return await fn();
  } catch (err) {
    return { error: errorMessage(err) };
  }
}

export const command: CommandModule<object, EnvArgs> = {
  command: 'env',
  describe: 'Show which ffmpeg/ffprobe, tfjs backend and matmul kernel rpv would use',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', describe: 'Print one JSON object' })
      .option('backend', {
        type: 'string',
        default: 'auto',
        choices: ['auto', 'tensorflow', 'wasm', 'cpu'],
        describe: 'Backend to try, as `rpv train --backend` would',
      })
      .example('$0 env', 'Paths and versions of ffmpeg/ffprobe, the tfjs backend and the matmul kernel')
      .example('$0 env --json', 'The same as JSON, for bug reports'),
  handler: async (args) => {
    const node = { version: process.version, platform: `${process.platform}-${process.arch}`, cpus: (await import('node:os')).cpus().length };
    const media = await probe(async () => ({
      ...(await (await import('../media/ffmpeg.js')).describeFfmpeg()),
      started: (await import('../media/run.js')).describeSpawn(),
    }));
    const backend = await probe(async () => {
      const { initBackend, describeBackend } = await import('../model/backend.js');
      await initBackend({ backend: (args.backend ?? 'auto') as 'auto' });
      return describeBackend();
    });
    const report = { rpv: await packageVersion(), node, media, backend };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    process.stdout.write(`rpv ${report.rpv}  node ${node.version} ${node.platform}, ${node.cpus} cpus\n`);
    process.stdout.write(`${formatSection('media', media)}${formatSection('backend', backend)}`);
  },
};

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const url = new URL('../../package.json', import.meta.url);
  return (JSON.parse(await readFile(url, 'utf8')) as { version: string }).version;
}

/** Indented `key: value` lines of a nested object. */
function formatSection(title: string, value: unknown, indent = ''): string {
  if (value === null || typeof value !== 'object') return `${indent}${title}: ${String(value)}\n`;
  let out = `${indent}${title}:\n`;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out += v !== null && typeof v === 'object' && !Array.isArray(v) ? formatSection(k, v, `${indent}  `) : `${indent}  ${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}\n`;
  }
  return out;
}
