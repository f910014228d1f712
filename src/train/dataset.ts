/**
 * What training needs to know about a dataset before streaming it: the held-out split (a
 * deterministic function of the video id and the seed, so every run, rank and resume agrees), and
 * each role's pool of training dialogues for the static profile. Built from one pass over the
 * shards' text columns (no frame features are decoded).
 */
import { readShardIndex } from '../shard/index-file.js';
import type { RetryOptions } from '../shard/fetch.js';
import { readShardRows } from '../shard/source.js';
import type { Dialogue, ShardIndex } from '../shard/schema.js';
import { hashString } from '../util/random.js';
import type { PromptTokenizer } from './prompt.js';

/** True when `videoId` is in the held-out split. */
export function isHeldOut(videoId: string, fraction: number, seed: number): boolean {
  if (fraction <= 0) return false;
  return hashString(videoId, seed ^ 0x5eed) / 4294967296 < fraction;
}

export interface RoleDialogue {
  videoId: string;
  dialogue: Dialogue;
}

export interface DatasetSummary {
  index: ShardIndex;
  videos: { train: number; heldout: number };
  dialogues: { train: number; heldout: number };
  /** Training dialogues of each role (the static profile's pool), in dataset order. */
  roleDialogues: Map<string, RoleDialogue[]>;
  /** Each role's distinct profile texts with how many videos (training and held out) carry them. */
  roleProfiles: Map<string, Map<string, number>>;
  /** Text-only rows (no frames). */
  textOnlyVideos: number;
}

/** Where `scanDataset` gets remote shards: the loader's cache, so each shard is downloaded once. */
export interface ScanOptions {
  heldoutFraction: number;
  seed: number;
  /** Remote shards: the cache folder the loader will use (default $RPV_CACHE_DIR, else ~/.cache/rpv/shards). */
  cacheDir?: string;
  /** Remote shards: retries of a download. */
  retry?: RetryOptions;
  /** Check each shard's bytes against the index's sha256 as they are read (default true; recipe key data.verify). */
  verify?: boolean;
  /** Who reads, the first word of errors (default `train`; `eval`, `generate`). */
  who?: string;
}

/**
 * Read every shard's text columns once; shards are taken in Arrow form when both formats exist.
 * Bytes come through ../shard/source.ts (`readShardRows`): checked against the index's sha256 as they are read (with
 * `verify`, the default), and a remote shard kept in the cache, where the loader finds it instead
 * of downloading it again.
 */
export async function scanDataset(source: string, { heldoutFraction, seed, cacheDir, retry, verify = true, who = 'train' }: ScanOptions): Promise<DatasetSummary> {
  const index = await readShardIndex(source, { retry });
  const arrow = index.shards.filter((s) => s.format === 'arrow');
  const shards = arrow.length > 0 ? arrow : index.shards;
  const summary: DatasetSummary = {
    index,
    videos: { train: 0, heldout: 0 },
    dialogues: { train: 0, heldout: 0 },
    roleDialogues: new Map(),
    roleProfiles: new Map(),
    textOnlyVideos: 0,
  };
  for (const shard of shards) {
    const rows = await readShardRows(source, shard, { who, cacheDir, retry, verify, columns: ['video_id', 'role', 'profile', 'num_frames', 'dialogues'] });
    for (const row of rows) {
      if (row.profile && row.profile.trim() !== '') {
        let profiles = summary.roleProfiles.get(row.role);
        if (!profiles) summary.roleProfiles.set(row.role, (profiles = new Map()));
        profiles.set(row.profile, (profiles.get(row.profile) ?? 0) + 1);
      }
      const held = isHeldOut(row.video_id, heldoutFraction, seed);
      if (row.num_frames === 0) summary.textOnlyVideos += 1;
      if (held) {
        summary.videos.heldout += 1;
        summary.dialogues.heldout += row.dialogues.length;
        continue;
      }
      summary.videos.train += 1;
      summary.dialogues.train += row.dialogues.length;
      let pool = summary.roleDialogues.get(row.role);
      if (!pool) summary.roleDialogues.set(row.role, (pool = []));
      for (const dialogue of row.dialogues) pool.push({ videoId: row.video_id, dialogue });
    }
  }
  return summary;
}

export interface StaticProfileOptions {
  mode: 'auto' | 'dialogues' | 'profile' | 'summary' | 'none';
  /** Other dialogues drawn from the role's pool (mode `dialogues`). */
  dialogues: number;
  maxTokens: number;
  seed: number;
}

/** Render dialogues as `speaker: text` lines. */
export function dialoguesAsText(dialogues: Dialogue[]): string {
  return dialogues.map((d) => d.turns.map((t) => `${t.speaker}: ${t.text.trim()}`).join('\n')).join('\n\n');
}

/** Keep at most `maxTokens` tokens of `text` (cut at a token boundary). */
export function capTokens(tok: PromptTokenizer, text: string, maxTokens: number): string {
  if (maxTokens <= 0) return '';
  const ids = tok.encode(text);
  if (ids.length <= maxTokens) return text;
  return tok.decode(ids.slice(0, maxTokens)).replace(/\uFFFD+$/, '');
}

/**
 * The static profile of one training sample:
 * - `profile`: the record's profile; `summary`: the video's summary;
 * - `dialogues`: `dialogues` other dialogues of the same role from other training videos, picked
 *   by a hash of (seed, sample id) so the choice is the same on every run and resume;
 * - `auto`: the record's profile when it has one, else `dialogues`.
 * Capped at `maxTokens` tokens.
 */
export function staticProfile(
  tok: PromptTokenizer,
  sample: { video_id: string; dialogue_id: string; role: string; profile: string | null; summary: string | null },
  pools: Map<string, RoleDialogue[]>,
  opts: StaticProfileOptions,
): string | null {
  let text: string | null = null;
  const mode = opts.mode === 'auto' ? (sample.profile && sample.profile.trim() ? 'profile' : 'dialogues') : opts.mode;
  if (mode === 'none') return null;
  if (mode === 'profile') text = sample.profile;
  else if (mode === 'summary') text = sample.summary;
  else {
    const pool = (pools.get(sample.role) ?? []).filter((d) => d.videoId !== sample.video_id);
    if (pool.length === 0 || opts.dialogues === 0) return null;
    const picked: Dialogue[] = [];
    const used = new Set<number>();
    let h = hashString(`${sample.video_id}/${sample.dialogue_id}`, opts.seed);
    while (picked.length < Math.min(opts.dialogues, pool.length)) {
      let i = h % pool.length;
      while (used.has(i)) i = (i + 1) % pool.length;
      used.add(i);
      picked.push(pool[i]!.dialogue);
      h = hashString(String(h), opts.seed);
    }
    text = dialoguesAsText(picked);
  }
  if (!text || text.trim() === '') return null;
  return capTokens(tok, text, opts.maxTokens);
}
