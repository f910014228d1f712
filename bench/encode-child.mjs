// The rpv side of bench/encode.ts, in a process of its own so its peak RSS (VmHWM) is the tower's
// alone, run as users run rpv: plain node on dist/ (what `npm install -g .` and `npx rpv` start),
// not under tsx, whose loader thread adds about 55 MB. Prints one JSON line.
//   node bench/encode-child.mjs <spec.json>
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const { loadVisionTower } = await import(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'vision', 'index.js'));
const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tower = await loadVisionTower(spec.folder, {});
const S = tower.imageSize;
const all = new Float32Array(readFileSync(spec.pixels).buffer.slice(0));
const pixels = all.subarray(0, spec.batch * 3 * S * S);
const ms = [];
let first = null;
for (let step = 0; step < spec.warmup + spec.steps; step++) {
  const t0 = performance.now();
  const out = await tower.encode(pixels, spec.batch);
  const elapsed = performance.now() - t0;
  first ??= out;
  if (step >= spec.warmup) ms.push(elapsed);
}
writeFileSync(spec.out, new Uint8Array(first.buffer, first.byteOffset, first.byteLength));
const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
const result = { ms, tokensPerFrame: tower.tokensPerFrame, width: tower.width, id: tower.id, settings: tower.settings, peakRssBytes: hwm ? Number(hwm[1]) * 1024 : 0 };
await tower.dispose();
process.stdout.write(`${JSON.stringify(result)}\n`);
