import type { CommandModule } from 'yargs';

interface InspectArgs {
  dir: string;
  verify: boolean;
  json: boolean;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export const command: CommandModule<object, InspectArgs> = {
  command: 'inspect <dir>',
  describe: 'Show what a shard folder holds; --verify re-hashes and re-reads every shard',
  builder: (yargs) =>
    yargs
      .positional('dir', { type: 'string', demandOption: true, describe: 'Shard folder (with index.json), an index.json path or URL' })
      .option('verify', { type: 'boolean', default: false, describe: 'Check every shard: size, sha256, full decode, counts; exit 1 naming bad files' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON' })
      .example('rpv inspect shards/sample', 'Totals, schema, shards and one row')
      .example('rpv inspect shards/sample --verify', 'Re-hash and re-read every shard'),
  handler: async (args) => {
    const { inspectDataset, renderRow } = await import('../shard/inspect.js');
    const { skipCategory } = await import('../convert/group.js');
    const report = await inspectDataset(args.dir, {
      verify: args.verify,
      onShard: args.json ? undefined : (c) => !c.ok && process.stderr.write(`bad shard ${c.file}: ${c.problem}\n`),
    });
    const { index } = report;
    const bad = report.checks?.filter((c) => !c.ok) ?? [];
    if (bad.length > 0) process.exitCode = 1;
    if (args.json) {
      const row = report.sampleRow;
      const sample = row
        ? { ...row, frame_times: Array.from(row.frame_times), frames: { length: row.frames.length, head: Array.from(row.frames.subarray(0, 8)) } }
        : null;
      process.stdout.write(`${JSON.stringify({ dir: report.dir, index, sampleRow: sample, checks: report.checks, ok: bad.length === 0 }, null, 2)}\n`);
      return;
    }
    const t = index.totals;
    const c = index.counts;
    const reasons: Record<string, number> = {};
    for (const s of index.skipped) reasons[skipCategory(s.reason)] = (reasons[skipCategory(s.reason)] ?? 0) + 1;
    const lines = [
      `${report.dir}: ${index.format} v${index.version}, created ${index.created}`,
      `totals    ${t.rows} rows, ${t.dialogues} dialogues, ${t.frames} frames, ${t.shards} file(s), ${formatBytes(t.bytes)}`,
      `counts    read ${c.read} = converted ${c.converted} + skipped ${c.skipped}` +
        (c.skipped ? ` (${Object.entries(reasons).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''),
      `schema    frames [num_frames, ${index.schema.tokensPerFrame}, ${index.schema.featureDim}] ${index.schema.dtype}; columns ${index.schema.columns.join(', ')}`,
      `sampling  fps ${index.sampling.fps}, frames ${index.sampling.minFrames}..${index.sampling.maxFrames}, ${index.sampling.frameSize}x${index.sampling.frameSize}`,
      `encoder   ${index.encoder.id}`,
      '',
      `  ${'file'.padEnd(24)} ${'format'.padEnd(8)} ${'rows'.padStart(7)} ${'dialogues'.padStart(9)} ${'bytes'.padStart(11)}  sha256${report.checks ? '        verify' : ''}`,
      ...index.shards.map((s, i) => {
        const check = report.checks?.[i];
        return `  ${s.file.padEnd(24)} ${s.format.padEnd(8)} ${String(s.rows).padStart(7)} ${String(s.dialogues).padStart(9)} ${formatBytes(s.bytes).padStart(11)}  ${s.sha256.slice(0, 12)}${check ? `  ${check.ok ? 'ok' : `BAD: ${check.problem}`}` : ''}`;
      }),
    ];
    if (report.sampleRow) lines.push('', 'first row:', ...renderRow(report.sampleRow, index).map((l) => `  ${l}`));
    if (report.checks) {
      lines.push('', bad.length === 0 ? `verify: all ${report.checks.length} shard file(s) ok` : `verify: ${bad.length} bad shard file(s): ${bad.map((b) => b.file).join(', ')}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
