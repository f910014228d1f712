/**
 * The PyTorch peer of bench/train-step.ts, set up as its users run it: Debian's python3-torch on
 * the system python with OpenBLAS answering its BLAS calls.
 *
 * Debian builds torch against the generic libblas.so.3 interface (`BLAS_INFO=generic` in
 * `torch.__config__.show()`); which library answers is decided at run time by the libblas.so.3
 * alternative. With only python3-torch installed that is libblas3, the Netlib reference BLAS (no
 * blocking, no threads: 6-20x slower here), and a ratio against it flatters anything. So the
 * peer is installed with libopenblas0-pthread, and the BLAS is verified in the Python process
 * itself (bench/train_step_torch.py: the library providing the `sgemm_` libtorch binds to, then
 * OpenBLAS's own `openblas_get_config()` and thread count). A reference or unidentified BLAS is
 * refused: no ratio is reported against it.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SYSTEM_PYTHON = '/usr/bin/python3';
export const TORCH_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'train_step_torch.py');
/** What a user installs on Debian/Ubuntu to train on CPU with the distribution's PyTorch. */
export const PEER_PACKAGES = ['python3-torch', 'libopenblas0-pthread'];

/** What bench/train_step_torch.py reports about the process it ran in. */
export interface PeerConfig {
  torch: string;
  /** torch's build setting (Debian: "generic", i.e. whatever libblas.so.3 is at run time). */
  blasInfo: string | null;
  /** Real path of the library providing the sgemm_ libtorch calls. */
  sgemmFrom: string | null;
  blas: 'openblas' | 'mkl' | 'blis' | 'reference' | 'unknown' | string;
  blasLibrary: string | null;
  /** OpenBLAS only: `openblas_get_config()` and `openblas_get_num_threads()`. */
  blasConfig?: string;
  blasThreads?: number;
  torchThreads: number;
  interopThreads: number;
  parallelBackend: string | null;
  env: Record<string, string | null>;
}

/** Why no ratio may be reported against this peer, or null when it is a fair one. */
export function peerRefusal(peer: PeerConfig): string | null {
  if (peer.blas === 'reference') {
    return (
      `PyTorch ${peer.torch} runs on the reference BLAS (sgemm_ from ${peer.sgemmFrom}), not what its users run; ` +
      'install libopenblas0-pthread (apt-get install -y libopenblas0-pthread) and check that ' +
      '`update-alternatives --display libblas.so.3-x86_64-linux-gnu` points at openblas' +
      (process.env.LD_LIBRARY_PATH ? ` and that LD_LIBRARY_PATH (${process.env.LD_LIBRARY_PATH}) does not override it` : '')
    );
  }
  if (peer.blas === 'unknown') {
    return `PyTorch ${peer.torch}: cannot tell which BLAS answers its calls (sgemm_ from ${peer.sgemmFrom ?? 'nowhere found'}, BLAS_INFO=${peer.blasInfo}); refusing to compare against an unidentified BLAS`;
  }
  return null;
}

/** One line for the console: version, BLAS and threads, e.g. beside each figure. */
export function describePeer(peer: PeerConfig): string {
  const plural = (n: number | undefined, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  let blas: string;
  if (peer.blas === 'openblas') {
    // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" -> "OpenBLAS 0.3.21"
    const name = (peer.blasConfig ?? 'OpenBLAS').split(' ').slice(0, 2).join(' ');
    const flavour = /openblas-(pthread|openmp|serial)\//.exec(peer.blasLibrary ?? '')?.[1];
    blas = `${name}${flavour ? ` ${flavour}` : ''}, ${plural(peer.blasThreads, 'BLAS thread')}`;
  } else {
    blas = `${peer.blas} BLAS (${peer.blasLibrary ?? 'library unknown'})`;
  }
  return `PyTorch ${peer.torch}, ${plural(peer.torchThreads, 'thread')}, ${blas}`;
}

/** The fields every results.jsonl line carries about the peer. */
export function peerRecord(peer: PeerConfig): Record<string, unknown> {
  return {
    torchVersion: peer.torch,
    torchThreads: peer.torchThreads,
    torchBlas: peer.blas,
    torchBlasLibrary: peer.blasLibrary,
    torchBlasConfig: peer.blasConfig ?? null,
    torchBlasThreads: peer.blasThreads ?? null,
    torchSgemmFrom: peer.sgemmFrom,
    torchBlasInfo: peer.blasInfo,
  };
}

/** Ask the system python what its torch runs on; a string says why it could not. */
export function probePeer(env: NodeJS.ProcessEnv = process.env): PeerConfig | string {
  const r = spawnSync(SYSTEM_PYTHON, [TORCH_SCRIPT, '--probe'], { encoding: 'utf8', env });
  if (r.error) return `${SYSTEM_PYTHON}: ${r.error.message}`;
  if (r.status !== 0) {
    const last = (r.stderr ?? '').trim().split('\n').pop() ?? '';
    return `${SYSTEM_PYTHON} ${path.basename(TORCH_SCRIPT)} --probe exited ${r.status}: ${last}`;
  }
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as PeerConfig;
  } catch {
    return `${SYSTEM_PYTHON} ${path.basename(TORCH_SCRIPT)} --probe printed no configuration`;
  }
}

function installed(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && /install ok installed/.test(r.stdout);
}

/** apt-get install the packages (waiting for another apt to finish); null or why it failed. */
function aptInstall(pkgs: string[], log: (line: string) => void): string | null {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return `not root: run \`sudo apt-get install -y ${pkgs.join(' ')}\` and rerun`;
  }
  log(`installing the PyTorch peer as its users would: apt-get install -y ${pkgs.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const lock = ['-o', 'DPkg::Lock::Timeout=600'];
  const update = spawnSync('apt-get', [...lock, 'update'], { stdio: 'inherit', env });
  if (update.error) return `apt-get: ${update.error.message}`;
  if (update.status !== 0) return `apt-get update failed (exit ${update.status})`;
  const install = spawnSync('apt-get', [...lock, 'install', '-y', ...pkgs], { stdio: 'inherit', env });
  return install.status === 0 ? null : `apt-get install -y ${pkgs.join(' ')} failed (exit ${install.status})`;
}

export type PeerSetup = { peer: PeerConfig; refused: string | null } | { missing: string };

/**
 * Make sure the peer is there and on OpenBLAS: install python3-torch and libopenblas0-pthread when
 * missing, then verify. `refused` says why no ratio may be taken (the BLAS is still the reference).
 */
export function ensurePeer(log: (line: string) => void): PeerSetup {
  let probe = probePeer();
  if (typeof probe === 'string') {
    const failed = aptInstall(PEER_PACKAGES.filter((p) => !installed(p)), log);
    if (failed) return { missing: `PyTorch missing on ${SYSTEM_PYTHON} (${probe}); ${failed}` };
    probe = probePeer();
    if (typeof probe === 'string') return { missing: `python3-torch installed but the probe fails: ${probe}` };
  }
  if (peerRefusal(probe) && !installed('libopenblas0-pthread')) {
    log(`PyTorch runs on ${probe.blas} BLAS (sgemm_ from ${probe.sgemmFrom})`);
    const failed = aptInstall(['libopenblas0-pthread'], log);
    if (failed) return { peer: probe, refused: `${peerRefusal(probe)} (${failed})` };
    const again = probePeer();
    if (typeof again === 'string') return { missing: `after installing libopenblas0-pthread the probe fails: ${again}` };
    probe = again;
  }
  return { peer: probe, refused: peerRefusal(probe) };
}
