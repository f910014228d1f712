// Temporary probe: frozen matmul efficiency per dtype (CPU seconds, robust to a loaded machine).
import { writeSafetensors } from '../src/util/safetensors.js';
import { SafetensorsReader } from '../src/util/safetensors.js';
import { MappedFile } from '../src/native/frozen.js';
import { loadNativeAddon } from '../src/native/addon.js';
const addon = loadNativeAddon().addon!;
const [rows, inF, outF] = [512, 896, 4864];
const w = new Float32Array(inF * outF).map((_, i) => Math.sin(i) * 0.02);
for (const dtype of ['F32', 'BF16'] as const) {
  const file = `/tmp/probe-${dtype}.safetensors`;
  await writeSafetensors(file, { w: { shape: [outF, inF], data: w, dtype } });
  const r = await SafetensorsReader.open(file); const loc = r.location('w'); await r.close();
  const m = MappedFile.open(file).matrix(loc.byteOffset, dtype, outF, inF);
  const heap = new Float32Array(rows * inF + rows * outF + rows * inF);
  heap.fill(0.5);
  for (const transpose of [true, false]) {
    for (let i = 0; i < 2; i++) addon.frozenMatmul!(heap, transpose ? 0 : rows * inF, rows, m.desc, transpose, transpose ? rows * inF : rows * inF + rows * outF);
    const c0 = process.cpuUsage(); const t0 = performance.now(); const n = 10;
    for (let i = 0; i < n; i++) addon.frozenMatmul!(heap, transpose ? 0 : rows * inF, rows, m.desc, transpose, transpose ? rows * inF : rows * inF + rows * outF);
    const cpu = (process.cpuUsage(c0).user + process.cpuUsage(c0).system) / 1e6; const wall = (performance.now() - t0) / 1000;
    const gflop = 2 * rows * inF * outF * n / 1e9;
    console.log(`${dtype} ${transpose ? 'fwd x W^T' : 'bwd dy W '} ${(gflop / cpu).toFixed(1)} GFLOP/cpu-s, ${(gflop / wall).toFixed(1)} GFLOP/wall-s`);
  }
}
const a = new Float32Array(512 * 896).fill(0.5), b = new Float32Array(896 * 4864).fill(0.1), c = new Float32Array(512 * 4864);
const { sgemm } = await import('../src/native/gemm.js');
for (let i = 0; i < 2; i++) sgemm({ a, b, m: 512, n: 4864, k: 896, out: c });
const c0 = process.cpuUsage(); const t0 = performance.now();
for (let i = 0; i < 10; i++) sgemm({ a, b, m: 512, n: 4864, k: 896, out: c });
const cpu = (process.cpuUsage(c0).user + process.cpuUsage(c0).system) / 1e6;
console.log(`plain f32 sgemm ${(2 * 512 * 896 * 4864 * 10 / 1e9 / cpu).toFixed(1)} GFLOP/cpu-s ${(2 * 512 * 896 * 4864 * 10 / 1e9 / ((performance.now() - t0) / 1000)).toFixed(1)} GFLOP/wall-s`);
