/**
 * The demo's showcase as a measure rather than one sample: over every held-out question whose
 * reference reply names a video-dependent word (a colour or a direction, `eval.focus_words`),
 * how often each run's greedy reply names exactly the words the reference names. One reply can
 * land on the right colour by chance; the rate over all held-out clips does not, and it holds
 * whichever ffmpeg decoded the clips (decoders differ by a few pixel values, and 1,200 steps
 * amplify that into different single replies).
 */
import path from 'node:path';
import type { VideoRow } from '../shard/schema.js';

/** The focus words a text names, in the order of `focusWords`. */
export function namedWords(text: string, focusWords: readonly string[]): string[] {
  const lower = text.toLowerCase();
  return focusWords.filter((w) => {
    const word = w.toLowerCase();
    // Latin words as whole words (`red` is not in `bored`); Chinese words as substrings.
    return /^[a-z]+$/.test(word) ? new RegExp(`(^|[^a-z])${word}([^a-z]|$)`).test(lower) : lower.includes(word);
  });
}

/** True when `reply` names the same focus words as `reference`: all of them, and no other. */
export function namesRightWords(reply: string, reference: string, focusWords: readonly string[]): boolean {
  const want = namedWords(reference, focusWords);
  const got = namedWords(reply, focusWords);
  return want.length > 0 && want.length === got.length && want.every((w, i) => got[i] === w);
}

export interface VisualAnswerScore {
  /** Held-out questions whose reference names a focus word. */
  questions: number;
  /** Clips they come from. */
  clips: number;
  /** Per run: replies naming exactly the reference's focus words. */
  right: Record<string, number>;
  /** One example per run pair where the runs differ (clip, question, reference, each run's reply), when any. */
  example: { videoId: string; role: string; question: string; reference: string; replies: Record<string, string> } | null;
}

/**
 * Ask every run each held-out question of `shardsDir` whose reference (the role's first reply)
 * names a focus word, and count the replies that name the same words. Runs are run folders;
 * generation is greedy with the run's trained profile and, for runs trained with video, the clip.
 * Shard bytes are checked against index.json as they are read (as the first run's `data.verify`
 * says): a damaged shard stops it with `demo: shard <file>: block 2 of 3 (bytes A-B): sha256 mismatch: ...`.
 */
export async function scoreVisualAnswers(shardsDir: string, runDirs: readonly string[], options: { maxNewTokens?: number } = {}): Promise<VisualAnswerScore> {
  const { readShardIndex } = await import('../shard/index-file.js');
  const { readShardRows } = await import('../shard/source.js');
  const { isHeldOut } = await import('../train/dataset.js');
  const { loadForGeneration, generateReply } = await import('../infer/generate.js');
  const { trainedProfile } = await import('../infer/generation-profile.js');
  const { promptTokenizer } = await import('../train/bridge.js');
  const index = await readShardIndex(shardsDir);
  const names = runDirs.map((d) => path.basename(d));
  const right: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const replies = new Map<string, string[]>();
  const questions: { row: VideoRow; question: string; reference: string; key: string }[] = [];
  let focusWords: string[] = [];
  const clips = new Set<string>();
  for (const [r, dir] of runDirs.entries()) {
    const loaded = await loadForGeneration(dir);
    try {
      const recipe = loaded.recipe;
      if (r === 0) {
        focusWords = recipe.eval.focus_words;
        for (const shard of index.shards.filter((s) => s.format === 'arrow')) {
          // Checked against index.json as read, unless the first run's recipe says data.verify: false.
          for (const row of await readShardRows(shardsDir, shard, { who: 'demo', verify: recipe.data.verify })) {
            if (!isHeldOut(row.video_id, recipe.data.heldout_fraction, recipe.seed) || row.num_frames === 0) continue;
            for (const d of row.dialogues) {
              const [ask, answer] = d.turns;
              if (!ask || !answer || ask.speaker === row.role || answer.speaker !== row.role) continue;
              if (namedWords(answer.text, focusWords).length === 0) continue;
              questions.push({ row, question: ask.text, reference: answer.text, key: `${row.video_id}/${d.dialogue_id}` });
              clips.add(row.video_id);
            }
          }
        }
      }
      const tokenizer = promptTokenizer(loaded.model.tokenizer!);
      for (const q of questions) {
        const reply = await generateReply({
          model: loaded.model,
          role: q.row.role,
          profile: trainedProfile({ recipe, tokenizer, role: q.row.role, row: q.row }).profile,
          video: recipe.data.use_video ? { features: q.row.frames, frameTimes: q.row.frame_times, tokensPerFrame: index.schema.tokensPerFrame, featureDim: index.schema.featureDim } : null,
          history: [{ role: 'user', content: q.question }],
          maxNewTokens: options.maxNewTokens ?? 40,
          frameTimeText: recipe.prompt.frame_time_text,
        });
        const text = reply.text.replace(/\n/g, ' ');
        if (namesRightWords(text, q.reference, focusWords)) right[names[r]!]! += 1;
        const list = replies.get(q.key) ?? [];
        list.push(text);
        replies.set(q.key, list);
      }
    } finally {
      loaded.model.dispose();
    }
  }
  // An example where the first run is right and another is not, else none.
  let example: VisualAnswerScore['example'] = null;
  for (const q of questions) {
    const texts = replies.get(q.key)!;
    const ok = texts.map((t) => namesRightWords(t, q.reference, focusWords));
    if (ok[0] && ok.slice(1).some((x) => !x)) {
      example = { videoId: q.row.video_id, role: q.row.role, question: q.question, reference: q.reference, replies: Object.fromEntries(names.map((n, i) => [n, texts[i]!])) };
      break;
    }
  }
  return { questions: questions.length, clips: clips.size, right, example };
}

/** The measure as the demo prints it: one line per run, then the example. */
export function formatVisualAnswers(score: VisualAnswerScore): string[] {
  const lines = [`  naming the clip's colour/direction on ${score.questions} held-out questions (${score.clips} clips; greedy replies):`];
  for (const [name, n] of Object.entries(score.right)) {
    const pct = score.questions > 0 ? (100 * n) / score.questions : 0;
    lines.push(`    ${name.padEnd(15)} ${String(n).padStart(4)}/${score.questions} right (${pct.toFixed(0)}%)`);
  }
  const e = score.example;
  if (e) {
    lines.push(`  e.g. held-out clip ${e.videoId} (${e.role}): "${e.question}"`);
    lines.push(`    reference       ${e.reference}`);
    for (const [name, text] of Object.entries(e.replies)) lines.push(`    ${name.padEnd(15)} ${text}`);
  }
  return lines;
}
