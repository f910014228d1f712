// Running tools: the addon's posix_spawn (src/native/spawner.cc, Linux) and Node's child_process
// (RPV_SPAWN=node, and every other platform) must behave the same: stdout bytes, stderr text,
// outputs on descriptors 3.., exit codes, signals, abort and a missing binary.
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { describeSpawn, nativeSpawn, OutputArena, runBinary, runBinaryOutputs } from '../../src/media/spawn.js';
import { loadNativeAddon } from '../../src/native/addon.js';

const saved = process.env.RPV_SPAWN;
afterEach(() => {
  if (saved === undefined) delete process.env.RPV_SPAWN;
  else process.env.RPV_SPAWN = saved;
});

function use(mode: 'native' | 'node'): void {
  if (mode === 'node') process.env.RPV_SPAWN = 'node';
  else delete process.env.RPV_SPAWN;
}

it('uses the addon to start tools on Linux, child_process under RPV_SPAWN=node', () => {
  use('native');
  if (process.platform === 'linux' && loadNativeAddon().addon) expect(nativeSpawn()).toBeTypeOf('function');
  use('node');
  expect(nativeSpawn()).toBeNull();
  expect(describeSpawn()).toBe('child_process (RPV_SPAWN=node)');
});

// 1 MiB of every byte value, written by the tool itself.
const bytesScript = 'head -c 1048576 /dev/zero | tr "\\000" "\\101"; printf "\\000\\377"';

describe.each(['native', 'node'] as const)('with %s spawning', (mode) => {
  const skip = mode === 'native' && !(process.platform === 'linux' && loadNativeAddon().addon);

  it.skipIf(skip)('collects stdout as bytes, stderr as text and the exit code', async () => {
    use(mode);
    const r = await runBinary('sh', ['-c', `${bytesScript}; echo "erreur 错误 ✓" >&2; exit 3`]);
    expect(r.code).toBe(3);
    expect(r.signal).toBeNull();
    expect(r.stdout.length).toBe(1048578);
    expect(r.stdout[0]).toBe(0x41);
    expect(r.stdout[1048575]).toBe(0x41);
    expect([...r.stdout.subarray(1048576)]).toEqual([0, 255]);
    expect(r.stderr).toBe('erreur 错误 ✓\n');
  });

  it.skipIf(skip)('gives each output on its own descriptor, in order, as views into the arena', async () => {
    use(mode);
    const arena = new OutputArena();
    const script = 'printf first >&3; printf "" >&4; head -c 300000 /dev/zero >&5; echo on-stdout; echo on-stderr >&2';
    const r = await runBinaryOutputs('sh', ['-c', script], 3, undefined, arena);
    expect(r.code).toBe(0);
    expect(r.outputs.map((b) => b.length)).toEqual([5, 0, 300000]);
    expect(r.outputs[0]!.toString()).toBe('first');
    expect(r.outputs[2]!.every((b) => b === 0)).toBe(true);
    expect(r.outputs[2]!.buffer).toBe(r.outputs[0]!.buffer);
    expect(r.stderr).toBe('on-stderr\n');
  });

  it.skipIf(skip)('starts the tool with SIGPIPE at its default action and an empty signal mask', async () => {
    use(mode);
    const r = await runBinary('sh', ['-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status']);
    const mask = (name: string) => BigInt(`0x${/^Sig\w+:\s*([0-9a-f]+)/m.exec(r.stdout.toString().split('\n').find((l) => l.startsWith(name))!)![1]}`);
    const bit = (signal: number) => 1n << BigInt(signal - 1);
    expect(mask('SigIgn') & bit(13)).toBe(0n); // SIGPIPE
    expect(mask('SigIgn') & ((1n << 31n) - 1n)).toBe(0n); // no standard signal ignored
    expect(mask('SigBlk') & ((1n << 31n) - 1n)).toBe(0n);
  }, 15_000);

  it.skipIf(skip)('reports the signal that killed the tool', async () => {
    use(mode);
    const r = await runBinary('sh', ['-c', 'kill -TERM $$']);
    expect(r.code).toBeNull();
    expect(r.signal).toBe('SIGTERM');
  });

  it.skipIf(skip)('kills the tool on abort and rejects with the reason', async () => {
    use(mode);
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(new Error('stop now')), 100);
    await expect(runBinary('sleep', ['20'], controller.signal)).rejects.toThrow('stop now');
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(runBinary('true', [], controller.signal)).rejects.toThrow('stop now');
  });

  it.skipIf(skip)('names the tool it cannot start', async () => {
    use(mode);
    await expect(runBinary('/nonexistent/rpv-tool', ['-v'])).rejects.toThrow(/^cannot run \/nonexistent\/rpv-tool: .*(ENOENT|No such file)/);
  });
});

// glibc >= 2.34 (posix_spawn_file_actions_addclosefrom_np); musl and older glibc pass on what
// child_process would.
const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
const closesOthers = glibc !== undefined && Number(glibc.split('.')[0]) * 1000 + Number(glibc.split('.')[1]) >= 2034;

it.runIf(process.platform === 'linux' && closesOthers)('passes the addon-started tool only the descriptors asked for', async () => {
  use('native');
  if (!nativeSpawn()) return expect(loadNativeAddon().addon).toBeNull();
  // ls runs as the shell's child; it lists the shell's descriptors: those it was given and no more
  // (this process holds dozens more, and whatever its own parent leaked into it).
  const r = await runBinary('sh', ['-c', 'ls /proc/$$/fd; true']);
  expect(r.stdout.toString().trim().split('\n').map(Number).sort()).toEqual([0, 1, 2]);
});

it.runIf(process.platform === 'linux')('reaps every tool it starts, many at once', async () => {
  use('native');
  const runs = await Promise.all(Array.from({ length: 24 }, (_, k) => runBinary('sh', ['-c', `exit ${k % 3}`])));
  expect(runs.map((r) => r.code)).toEqual(Array.from({ length: 24 }, (_, k) => k % 3));
  // No child of this process is left behind, zombie or not.
  const children = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return { pid: Number(d), state: fields[0], ppid: Number(fields[1]), name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) };
      } catch {
        return null;
      }
    })
    .filter((p) => p !== null && p.ppid === process.pid && p.name === 'sh');
  expect(children).toEqual([]);
});
