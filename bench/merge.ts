/**
 * merge-lora benchmark: peak resident memory and time of `mergeLora` on a real-size base, beside
 * the base's size on disk (the ceiling a merge in the model's own dtype should stay near: PEFT's
 * merge_and_unload holds the model once, in its dtype).
 *
 *   npx tsx bench/merge.ts [--preset qwen2.5-0.5b|internvl2.5-1b|...] [--before /work/main] [--rank 16]
 *
 * Input (written into bench/data/merge/<preset>/ if missing): `writeTinyModel(dir, { preset })`
 * (qwen2.5-0.5b: Qwen2.5-0.5B's shapes and vocabulary, random BF16 weights, 0.49 B parameters),
 * or `writeTinyInternVL` for internvl2.5-1b (0.94 B parameters, BF16; the LoRA goes into its
 * language_model, mlp1 stays the base's), and a synthetic PEFT adapter (rank 16, alpha 32, all
 * seven modules of every layer, A and B random: every adapted linear changes), as
 * `recipes/qwen2.5-0.5b-video60k.yaml` trains it.
 *
 * Each merge runs in its own process (`tsx`), which reports its peak RSS (getrusage maxrss: the
 * high-water mark, tsx and the imports included) and the merge's wall time. `--before <checkout>`
 * also runs the merge of another checkout of rpv (its src/model/merge.ts, e.g. main before the
 * streamed merge) on the same inputs; the two outputs must be byte for byte equal (checked by
 * sha256). One JSON line is appended to bench/results.jsonl.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, createReadStream, existsSync, promises as fs, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { peftAdapterConfig } from '../src/model/adapter.js';
import { INTERNVL_PRESETS, writeTinyInternVL, type InternVLPreset } from '../src/model/internvl-tiny.js';
import { writeTinyModel, type ModelPreset } from '../src/model/tiny.js';
import { WeightFolder } from '../src/model/weights.js';
import { writeSafetensors, type SafetensorsInput } from '../src/util/safetensors.js';
import { seededRandom } from '../src/util/random.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

interface Run {
  sec: number;
  peakRssMB: number;
  /** RSS once the merge code is imported, before the merge. */
  rssBeforeMB: number;
}

/** Child: one merge with the mergeLora of `checkout`, its figures as one JSON line on stdout. */
async function child(checkout: string, model: string, adapter: string, out: string): Promise<void> {
  const { mergeLora } = (await import(path.join(checkout, 'src', 'model', 'merge.ts'))) as typeof import('../src/model/merge.js');
  const rssBeforeMB = process.memoryUsage().rss / 2 ** 20;
  const t0 = performance.now();
  await mergeLora(model, adapter, out);
  const sec = (performance.now() - t0) / 1000;
  const run: Run = { sec: +sec.toFixed(2), peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024), rssBeforeMB: Math.round(rssBeforeMB) };
  process.stdout.write(`${JSON.stringify(run)}\n`);
}

async function writeAdapter(model: string, dir: string, rank: number, prefix: string): Promise<void> {
  const folder = await WeightFolder.open(model);
  const rng = seededRandom(11);
  const tensors = new Map<string, SafetensorsInput>();
  try {
    for (const name of folder.names) {
      const m = name.startsWith(prefix) ? /^model\.layers\.\d+\.(self_attn|mlp)\.(\w+_proj)\.weight$/.exec(name.slice(prefix.length)) : null;
      if (!m || !MODULES.includes(m[2]!)) continue;
      const [out, inF] = folder.location(name).shape as [number, number];
      const p = `base_model.model.${name.slice(prefix.length).replace(/\.weight$/, '')}`;
      tensors.set(`${p}.lora_A.weight`, { shape: [rank, inF], data: rng.normal(rank * inF, 0.02) });
      tensors.set(`${p}.lora_B.weight`, { shape: [out, rank], data: rng.normal(out * rank, 0.002) });
    }
  } finally {
    await folder.close();
  }
  await fs.mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { metadata: { format: 'pt' } });
  const config = peftAdapterConfig({ rank, alpha: 2 * rank, dropout: 0, targetModules: MODULES, useRslora: false }, model);
  await fs.writeFile(path.join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function runMerge(checkout: string, model: string, adapter: string, out: string): Run {
  const r = spawnSync('npx', ['tsx', fileURLToPath(import.meta.url), '--child', checkout, model, adapter, out], { cwd: path.join(here, '..'), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`merge bench: the merge of ${checkout} failed: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Run;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, args[2]!, args[3]!, args[4]!);
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const preset = flag('--preset') ?? 'qwen2.5-0.5b';
  const internvl = (INTERNVL_PRESETS as readonly string[]).includes(preset);
  const before = flag('--before');
  const rank = Number(flag('--rank') ?? 16);
  const dir = path.join(here, 'data', 'merge', preset);
  const model = path.join(dir, 'model');
  const adapter = path.join(dir, `adapter-r${rank}`);
  if (!existsSync(path.join(model, 'config.json'))) {
    process.stdout.write(`writing ${model} (preset ${preset}) ...\n`);
    if (internvl) await writeTinyInternVL(model, { preset: preset as InternVLPreset });
    else await writeTinyModel(model, { preset: preset as ModelPreset });
  }
  if (!existsSync(path.join(adapter, 'adapter_config.json'))) await writeAdapter(model, adapter, rank, internvl ? 'language_model.' : '');
  const weightFiles = readdirSync(model).filter((f) => f.endsWith('.safetensors'));
  const baseBytes = weightFiles.reduce((a, f) => a + statSync(path.join(model, f)).size, 0);
  const baseMB = Math.round(baseBytes / 2 ** 20);
  const load = os.loadavg()[0]!;
  process.stdout.write(`merge bench: ${preset} base ${baseMB} MB on disk (${weightFiles.length} file(s)), LoRA r ${rank} on all seven modules; ${os.availableParallelism()} CPUs, 1-min load ${load.toFixed(1)}\n`);
  const runs: Record<string, Run & { checkout: string; commit: string; sha256: string }> = {};
  const cases: [string, string][] = [...(before ? [['before', path.resolve(before)] as [string, string]] : []), ['after', path.join(here, '..')]];
  for (const [label, checkout] of cases) {
    const out = path.join(dir, `merged-${label}`);
    await fs.rm(out, { recursive: true, force: true });
    const run = runMerge(checkout, model, adapter, out);
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: checkout, encoding: 'utf8' }).trim();
    runs[label] = { ...run, checkout, commit, sha256: await sha256(path.join(out, 'model.safetensors')) };
    process.stdout.write(`  ${label} (${checkout} @ ${commit}): ${run.sec} s, peak RSS ${run.peakRssMB} MB = ${(run.peakRssMB / baseMB).toFixed(2)}x the base on disk (RSS ${run.rssBeforeMB} MB before the merge)\n`);
  }
  const same = before ? runs.before!.sha256 === runs.after!.sha256 : null;
  if (same === false) process.stdout.write('  the two merges wrote different model.safetensors\n');
  for (const label of Object.keys(runs)) await fs.rm(path.join(dir, `merged-${label}`), { recursive: true, force: true });
  const line = {
    bench: 'merge',
    case: `merge-${preset}`,
    preset,
    baseDtype: 'BF16',
    baseMB,
    rank,
    modules: MODULES.length,
    ...Object.fromEntries(Object.entries(runs).map(([k, r]) => [k, { sec: r.sec, peakRssMB: r.peakRssMB, rssBeforeMB: r.rssBeforeMB, peakVsBase: +(r.peakRssMB / baseMB).toFixed(2), commit: r.commit }])),
    sameBytes: same,
    cpus: os.availableParallelism(),
    loadavg1Start: +load.toFixed(1),
    loadavg1End: +os.loadavg()[0]!.toFixed(1),
    node: process.version,
    time: new Date().toISOString(),
  };
  appendFileSync(path.join(here, 'results.jsonl'), `${JSON.stringify(line)}\n`);
  if (same === false) process.exit(1);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
