/**
 * Whether the WebGPU tests can run here: the optional npm packages and a Dawn adapter (on CI, Mesa's
 * llvmpipe through EGL; .ci/run installs it). Elsewhere they are skipped with the reason printed;
 * under RPV_CI=1 (set by .ci/run) an unavailable route fails instead.
 */
import { describeProbe, probeWebgpu } from '../../src/model/webgpu.js';

export const SOFTWARE_PACKAGES = 'libegl1 libegl-mesa0 libgl1-mesa-dri libegl-dev';

/** Null when a WebGPU adapter (hardware or software) is there, else why not. */
export async function webgpuUnavailable(): Promise<string | null> {
  const r = await probeWebgpu();
  if (r.missing) return r.missing;
  if (r.probes.some((p) => p.adapter)) return null;
  return `no WebGPU adapter (${r.probes.map(describeProbe).join('; ')}); on Debian: apt-get install ${SOFTWARE_PACKAGES}`;
}

/** Print the reason once, so a skipped run says why. */
export function reportSkip(file: string, reason: string | null): void {
  if (reason) process.stdout.write(`${file}: WebGPU tests skipped: ${reason}\n`);
}
