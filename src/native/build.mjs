#!/usr/bin/env node
// Builds rpv's native matmul addon (binding.gyp -> build/Release/rpv_matmul.node). Run by the
// package's `install` script and by hand (`node src/native/build.mjs`). It never fails the
// install: without a compiler, make, python3 or Node headers it prints one line saying rpv will
// use tfjs-wasm's own matmul, and leaves the compiler's output in build/native-build.log.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const logFile = path.join(root, 'build', 'native-build.log');
const addonFile = path.join(root, 'build', 'Release', 'rpv_matmul.node');
const fallbackNote = "rpv will use tfjs-wasm's own (single-threaded) matmul";

function say(line) {
  process.stdout.write(`rpv: ${line}\n`);
}

function findNodeGyp() {
  // npm exports the path of its bundled node-gyp to lifecycle scripts.
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((p) => p && existsSync(p));
}

function findNodeDir() {
  // Node's own headers beat a download (no network here); npm passes its `nodedir` setting.
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function main() {
  if (process.env.RPV_SKIP_NATIVE_BUILD === '1') {
    say(`native matmul build skipped (RPV_SKIP_NATIVE_BUILD=1); ${fallbackNote}`);
    return;
  }
  mkdirSync(path.dirname(logFile), { recursive: true });
  const gyp = findNodeGyp();
  if (!gyp) {
    writeFileSync(logFile, 'node-gyp not found (neither npm_config_node_gyp nor npm\'s bundled copy)\n');
    say(`native matmul not built: node-gyp not found; ${fallbackNote}`);
    return;
  }
  const nodedir = findNodeDir();
  const args = [gyp, 'rebuild', '--release', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  const started = Date.now();
  const build = (env) => {
    const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env });
    return { result: r, output: `$ node ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}\n` };
  };
  let { result, output } = build(process.env);
  // The Gloo collectives (optional) must never cost the main addon: without them, once more.
  let glooNote = '';
  if ((result.status !== 0 || !existsSync(addonFile)) && /collective/.test(output)) {
    glooNote = ` (${(output.split('\n').find((l) => /collective.*error/i.test(l)) ?? 'see the log').trim().slice(0, 120)})`;
    ({ result, output } = build({ ...process.env, RPV_GLOO: '0' }));
  }
  writeFileSync(logFile, output);
  if (result.status !== 0 || !existsSync(addonFile)) {
    const lines = output.split('\n').filter((l) => /error|not found|No such/i.test(l));
    const hint = lines.length > 0 ? `: ${lines[0].trim().slice(0, 160)}` : '';
    say(`native matmul not built (node-gyp exit ${result.status ?? 'signal'}${hint}); ${fallbackNote}. Log: ${path.relative(root, logFile)}`);
    return;
  }
  try {
    const addon = createRequire(import.meta.url)(addonFile);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    say(`native matmul built in ${seconds} s: ${path.relative(root, addonFile)} (${addon.detectedIsa()}, ${addon.threads()} threads by default)`);
    const collective = path.join(root, 'build', 'Release', 'rpv_collective.node');
    say(existsSync(collective) ? `Gloo collectives built: ${path.relative(root, collective)} (rpv train --nproc N)` : `Gloo collectives not built${glooNote || ' (libgloo-dev is not installed)'}: rpv train runs as one process; see \`rpv env\``);
  } catch (err) {
    say(`native matmul built but does not load (${String(err.message).split('\n')[0]}); ${fallbackNote}`);
  }
}

try {
  main();
} catch (err) {
  say(`native matmul build failed unexpectedly (${err?.message ?? err}); ${fallbackNote}`);
}
