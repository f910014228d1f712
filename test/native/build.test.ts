// The install script never fails an install: without a usable compiler it prints one line saying
// rpv falls back to tfjs-wasm's matmul, keeps the log, and exits 0. (The successful build is what
// `npm ci` runs before these tests; every other test here needs its output.)
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

it('exits 0 with one clear line when the compiler is missing', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rpv-native-build-'));
  try {
    cpSync(path.join(root, 'binding.gyp'), path.join(dir, 'binding.gyp'));
    cpSync(path.join(root, 'src', 'native'), path.join(dir, 'src', 'native'), { recursive: true });
    const result = spawnSync(process.execPath, [path.join(dir, 'src', 'native', 'build.mjs')], {
      encoding: 'utf8',
      env: { ...process.env, CXX: '/nonexistent/g++', CC: '/nonexistent/gcc' },
    });
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^rpv: native matmul not built \(node-gyp exit 1: .*\/nonexistent\/g(cc|\+\+).*\); rpv will use tfjs-wasm's own \(single-threaded\) matmul\. Log: build\/native-build\.log$/,
    );
    expect(existsSync(path.join(dir, 'build', 'Release', 'rpv_matmul.node'))).toBe(false);
    expect(readFileSync(path.join(dir, 'build', 'native-build.log'), 'utf8')).toContain('gyp ERR!');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('is skipped by RPV_SKIP_NATIVE_BUILD=1', () => {
  const result = spawnSync(process.execPath, [path.join(root, 'src', 'native', 'build.mjs')], {
    encoding: 'utf8',
    env: { ...process.env, RPV_SKIP_NATIVE_BUILD: '1' },
  });
  expect(result.status).toBe(0);
  expect(result.stdout).toBe(
    "rpv: native matmul build skipped (RPV_SKIP_NATIVE_BUILD=1); rpv will use tfjs-wasm's own (single-threaded) matmul\n",
  );
});
