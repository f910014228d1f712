import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { describePeer, peerRefusal, probePeer, SYSTEM_PYTHON, type PeerConfig } from '../../bench/torch-peer.js';

const openblas: PeerConfig = {
  torch: '1.13.0a0',
  blasInfo: 'generic',
  sgemmFrom: '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3',
  blas: 'openblas',
  blasLibrary: '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so',
  blasConfig: 'OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64',
  blasThreads: 1,
  torchThreads: 1,
  interopThreads: 1,
  parallelBackend: 'OpenMP',
  env: {},
};
const reference: PeerConfig = {
  ...openblas,
  sgemmFrom: '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0',
  blas: 'reference',
  blasLibrary: '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0',
  blasConfig: undefined,
  blasThreads: undefined,
};

describe('the PyTorch peer of bench/train-step.ts', () => {
  it('is described with its version, threads and BLAS', () => {
    expect(describePeer(openblas)).toBe('PyTorch 1.13.0a0, 1 thread, OpenBLAS 0.3.21 pthread, 1 BLAS thread');
    expect(describePeer({ ...openblas, torchThreads: 2, blasThreads: 2 })).toBe('PyTorch 1.13.0a0, 2 threads, OpenBLAS 0.3.21 pthread, 2 BLAS threads');
    expect(describePeer(reference)).toBe('PyTorch 1.13.0a0, 1 thread, reference BLAS (/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0)');
  });

  it('is refused on the reference BLAS or an unidentified one, accepted on OpenBLAS', () => {
    const saved = process.env.LD_LIBRARY_PATH;
    delete process.env.LD_LIBRARY_PATH;
    try {
      expect(peerRefusal(openblas)).toBeNull();
      expect(peerRefusal({ ...openblas, blas: 'mkl', blasLibrary: 'linked into libtorch' })).toBeNull();
      expect(peerRefusal(reference)).toBe(
        'PyTorch 1.13.0a0 runs on the reference BLAS (sgemm_ from /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0), not what its users run; ' +
          'install libopenblas0-pthread (apt-get install -y libopenblas0-pthread) and check that ' +
          '`update-alternatives --display libblas.so.3-x86_64-linux-gnu` points at openblas',
      );
      expect(peerRefusal({ ...openblas, blas: 'unknown', sgemmFrom: null, blasInfo: 'generic' })).toBe(
        'PyTorch 1.13.0a0: cannot tell which BLAS answers its calls (sgemm_ from nowhere found, BLAS_INFO=generic); refusing to compare against an unidentified BLAS',
      );
    } finally {
      if (saved !== undefined) process.env.LD_LIBRARY_PATH = saved;
    }
  });

  // Where the system python has torch (the benchmark machine), the probe itself is checked: it
  // must name the library that really answers, with OpenBLAS and with Debian's reference BLAS.
  const hasTorch = existsSync(SYSTEM_PYTHON) && spawnSync(SYSTEM_PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  const debianBlas = '/usr/lib/x86_64-linux-gnu/blas';
  const debianOpenblas = '/usr/lib/x86_64-linux-gnu/openblas-pthread';

  it.skipIf(!hasTorch || !existsSync(debianOpenblas))('probes OpenBLAS in the python process, with the threads asked for', () => {
    const peer = probePeer({ ...process.env, LD_LIBRARY_PATH: debianOpenblas, OPENBLAS_NUM_THREADS: '1' });
    if (typeof peer === 'string') throw new Error(peer);
    expect(peer.blas).toBe('openblas');
    expect(peer.sgemmFrom).toContain('openblas');
    expect(peer.blasConfig).toMatch(/^OpenBLAS \d/);
    expect(peer.blasThreads).toBe(1);
    expect(peerRefusal(peer)).toBeNull();
  });

  it.skipIf(!hasTorch || !existsSync(debianBlas))('probes the reference BLAS when it is the one loaded, and refuses it', () => {
    const peer = probePeer({ ...process.env, LD_LIBRARY_PATH: `${debianBlas}:/usr/lib/x86_64-linux-gnu/lapack` });
    if (typeof peer === 'string') throw new Error(peer);
    expect(peer.blas).toBe('reference');
    expect(peer.sgemmFrom).toMatch(/\/blas\/libblas\.so/);
    expect(peerRefusal(peer)).toMatch(/^PyTorch .* runs on the reference BLAS/);
  });
});
