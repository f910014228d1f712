/**
 * `rpv train --dry-run`: what a run would do, without training: the resolved recipe, the backend,
 * dataset counts and schedule, the trainable parameters, and one rendered training sample with
 * the tokens that carry the loss marked.
 */
import { createLoader } from '../loader/index.js';
import { openSession } from './trainer.js';
import { showLossMask, type RenderedPrompt } from './prompt.js';
import { formatRecipe, resolveRecipe, type Recipe, type RecipeInput } from './recipe.js';
import { decays } from './adamw.js';
import { describePlan } from './memory.js';
import type { PreparedSample } from './pack.js';
import { arrangeStep, arrangementOf, fillRatio } from './packing.js';
import { packBatch } from './pack.js';

export async function dryRun(input: Recipe | RecipeInput): Promise<string> {
  const recipe = resolveRecipe(input, [], 'dry-run');
  const lines: string[] = [];
  const session = await openSession(recipe, (l) => lines.push(`note: ${l}`));
  try {
    const out: string[] = [];
    out.push('# resolved recipe', formatRecipe(recipe).trimEnd(), '');
    const b = session.backend;
    out.push('# backend', `${b.backend} (${b.package}, tfjs ${b.tfjsVersion}), threads ${b.threads}, simd ${b.simd}, gpu ${b.gpu}, native matmul ${b.nativeMatmul.active ? 'on' : `off${b.nativeMatmul.reason ? ` (${b.nativeMatmul.reason})` : ''}`}`, ...lines, '');
    const d = session.dataset;
    out.push(
      '# dataset',
      `shards: ${d.index.shards.length}, feature dim ${session.featureDim}, ${session.tokensPerFrame} token(s) per frame; encoder ${d.index.encoder.id}`,
      videoShare(session.tokensPerFrame, d.index.sampling.maxFrames, recipe.prompt.max_tokens, recipe.data.use_video),
      `videos: ${d.videos.train} train, ${d.videos.heldout} held out (${d.textOnlyVideos} text-only)`,
      `dialogues: ${d.dialogues.train} train, ${d.dialogues.heldout} held out`,
      `loader batches per epoch: ${session.batchesPerEpoch} (batch ${recipe.data.batch_size}, held-out samples removed from each)`,
      `optimizer steps: ${session.totalSteps} (warm-up ${session.warmupSteps}, projector-only ${recipe.train.projector_warmup_steps}), grad accumulation ${recipe.train.grad_accum_steps}`,
      '',
    );
    out.push('# memory', ...describePlan(session.memory), '');
    const groups = new Map<string, { tensors: number; values: number; decayed: number }>();
    for (const p of session.params) {
      const g = groups.get(p.group) ?? { tensors: 0, values: 0, decayed: 0 };
      g.tensors += 1;
      g.values += p.variable.size;
      if (decays(p.name, p.variable.shape)) g.decayed += 1;
      groups.set(p.group, g);
    }
    out.push('# trainable parameters');
    for (const [name, g] of groups) out.push(`${name}: ${g.values.toLocaleString('en-US')} values in ${g.tensors} tensors (${g.decayed} with weight decay)`);
    out.push('');

    // The first training sample in the run's order, and the first step's samples.
    let shown: { id: string; prompt: RenderedPrompt } | null = null;
    const skips: Record<string, number> = {};
    const firstStep: PreparedSample[][] = [];
    const loader = createLoader<{ id: string; prompt?: RenderedPrompt; sample?: PreparedSample; skip?: string }[]>({
      source: recipe.data.shards,
      batchSize: recipe.data.batch_size,
      seed: recipe.seed,
      shuffle: recipe.data.shuffle,
      workers: 0,
      verify: recipe.data.verify,
      collate: (samples) => samples.map((s) => ({ id: s.sampleId, ...session.prepare(s) })),
    });
    for await (const batch of loader) {
      for (const r of batch) {
        if (r.prompt && !shown) shown = { id: r.id, prompt: r.prompt };
        if (r.skip && !shown) skips[r.skip] = (skips[r.skip] ?? 0) + 1;
      }
      const samples = batch.flatMap((r) => (r.sample ? [r.sample] : []));
      if (samples.length > 0) firstStep.push(samples);
      if (firstStep.length >= recipe.train.grad_accum_steps) break;
    }
    out.push(...describeFirstStep(recipe, firstStep, session.featureDim), '');
    out.push('# first training sample ([[...]] carries the loss, [video xN] = N video tokens)');
    if (!shown) out.push(`none: every sample was skipped (${JSON.stringify(skips)})`);
    else {
      const p = shown.prompt;
      const share = p.inputIds.length > 0 ? ` = ${percent(p.videoPositions.length, recipe.prompt.max_tokens)} of prompt.max_tokens ${recipe.prompt.max_tokens}` : '';
      out.push(`${shown.id}: ${p.inputIds.length} tokens (${p.videoPositions.length} video${share}, ${p.trainedTokens} trained), ${p.numFrames} frames`);
      out.push(showLossMask(session.tokenizer, p));
    }
    return `${out.join('\n')}\n`;
  } finally {
    session.dispose();
  }
}

/** The first step's micro-batches as the recipe arranges them: rows, samples per row, fill. */
function describeFirstStep(recipe: Recipe, batches: PreparedSample[][], featureDim: number): string[] {
  const mode = arrangementOf(recipe.data);
  const what = { packed: 'packed rows (data.packing)', grouped: 'grouped by length (data.group_by_length)', padded: 'padded loader batches' }[mode];
  if (batches.length === 0) return [`# first step: ${what}`, 'none: no trainable sample'];
  const micro =
    mode === 'padded'
      ? batches.map((b) => packBatch(b, featureDim))
      : arrangeStep(batches.flat(), mode, { batchSize: recipe.data.batch_size, maxTokens: recipe.prompt.max_tokens, featureDim });
  const samples = micro.reduce((n, m) => n + m.sampleIds.length, 0);
  const fill = fillRatio(micro);
  const out = [
    `# first step: ${what}`,
    `${samples} samples in ${micro.length} micro-batch(es) of ${micro.reduce((n, m) => n + m.batch, 0)} rows; fill ${percent(fill, 1)} of the computed positions (padding ${percent(1 - fill, 1)})`,
  ];
  micro.forEach((m, i) => {
    out.push(`micro-batch ${i + 1}: ${m.batch} row(s) x ${m.seqLen} positions`);
    if (m.rows) {
      m.rows.forEach((ids, r) => {
        let tokens = 0;
        for (let t = 0; t < m.seqLen; t++) tokens += m.attentionMask[r * m.seqLen + t]!;
        out.push(`  row ${r + 1}: ${ids.length} sample(s), ${tokens} tokens = ${percent(tokens, recipe.prompt.max_tokens)} of prompt.max_tokens (${ids.join(', ')})`);
      });
    } else out.push(`  ${m.tokens} tokens in ${m.batch * m.seqLen} positions (${m.sampleIds.join(', ')})`);
  });
  return out;
}

function percent(part: number, whole: number): string {
  return `${((100 * part) / whole).toFixed(1)}%`;
}

/** The video's share of the prompt: tokens per frame x the most frames a video has, against max_tokens. */
function videoShare(tokensPerFrame: number, maxFrames: number, maxTokens: number, useVideo: boolean): string {
  if (!useVideo) return 'video: not used (data.use_video false)';
  const tokens = tokensPerFrame * maxFrames;
  return (
    `video: ${tokensPerFrame} token(s) per frame x up to ${maxFrames} frames = up to ${tokens} video tokens, ` +
    `${percent(tokens, maxTokens)} of prompt.max_tokens ${maxTokens}` +
    (tokens >= maxTokens ? ' (no room left for the dialogue: lower the frames or the tokens per frame, e.g. pool=2, or raise prompt.max_tokens)' : '')
  );
}
