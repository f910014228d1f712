import type { CommandModule } from 'yargs';
import { errorMessage } from '../util/errors.js';
import { BACKEND_NAMES, type BackendInfo } from '../model/backend.js';

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
  describe: 'Show which ffmpeg/ffprobe, tfjs backend (and why each route was or was not taken), WebGPU adapter and matmul kernel rpv would use',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', describe: 'Print one JSON object' })
      .option('backend', {
        type: 'string',
        default: 'auto',
        choices: [...BACKEND_NAMES],
        describe: 'Backend to try, as `rpv train --backend` would',
      })
      .example('$0 env', 'Paths and versions of ffmpeg/ffprobe, the tfjs backend and the matmul kernel')
      .example('$0 env --json', 'The same as JSON, for bug reports')
      .example('$0 env --backend webgpu', 'Start WebGPU even on a software adapter and show it'),
  handler: async (args) => {
    const node = { version: process.version, platform: `${process.platform}-${process.arch}`, cpus: (await import('node:os')).cpus().length };
    const media = await probe(async () => ({
      ...(await (await import('../media/ffmpeg.js')).describeFfmpeg()),
      started: (await import('../media/spawn.js')).describeSpawn(),
    }));
    const backend = await probe(async () => {
      const { initBackend, describeBackend } = await import('../model/backend.js');
      // The report lists every route with its reason; no separate fallback line.
      await initBackend({ backend: (args.backend ?? 'auto') as 'auto', log: null });
      return describeBackend();
    });
    const distributed = await probe(async () => (await import('../train/distributed.js')).describeDistributed());
    const report = { rpv: await packageVersion(), node, media, backend, distributed };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    process.stdout.write(`rpv ${report.rpv}  node ${node.version} ${node.platform}, ${node.cpus} cpus\n`);
    process.stdout.write(`${formatSection('media', media)}${formatSection('backend', backendForText(backend))}${formatSection('distributed', distributed)}`);
  },
};

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const url = new URL('../../package.json', import.meta.url);
  return (JSON.parse(await readFile(url, 'utf8')) as { version: string }).version;
}

/** The backend report with its lists as one line per entry (routes, WebGPU probes). */
function backendForText(backend: unknown): unknown {
  if (backend === null || typeof backend !== 'object' || !('routes' in backend)) return backend;
  const { routes, webgpuProbes, notes, ...rest } = backend as BackendInfo;
  const out: Record<string, unknown> = { ...rest };
  out.routes = Object.fromEntries(routes.map((r) => [r.route, `${r.taken ? 'taken' : 'not taken'}: ${r.reason}`]));
  if (webgpuProbes?.length) {
    out['webgpu adapters'] = Object.fromEntries(
      webgpuProbes.map((p) => [
        p.backend,
        p.adapter
          ? `${p.adapter.software ? 'software' : 'hardware'}; vendor ${JSON.stringify(p.adapter.vendor)}, architecture ${JSON.stringify(p.adapter.architecture)}, device ${JSON.stringify(p.adapter.device)}, description ${JSON.stringify(p.adapter.description)}${p.adapter.software ? ` (${p.adapter.softwareReason})` : ''}`
          : `none: ${p.reason ?? ''}`,
      ]),
    );
  }
  out.notes = notes;
  return out;
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
