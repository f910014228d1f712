/**
 * The static profile of a reply generated with a trained run: by default the one the run was
 * trained with, chosen and rendered by the same code as training (`staticProfile` with the
 * recipe's `prompt.static_profile`, `profile_dialogues`, `profile_max_tokens` and seed). A model
 * trained with a profile in every prompt answers nonsense without one.
 *
 * - `--row`: the row itself is the sample, as in training.
 * - A new video of a known role: the role's profile from the run's shards (the most common one when
 *   the role's videos carry several), its training dialogues for `dialogues`, the `summary` given
 *   for `summary`.
 * - Unknown role, or nothing to draw from: no profile, and the reason says so.
 */
import { staticProfile, type DatasetSummary } from '../train/dataset.js';
import type { PromptTokenizer } from '../train/prompt.js';
import type { Recipe } from '../train/recipe.js';

export interface TrainedProfileOptions {
  /** The run's resolved recipe. */
  recipe: Recipe;
  tokenizer: PromptTokenizer;
  /** The role that replies. */
  role: string;
  /** The shard row the reply is about (`--row`): its own profile and summary are used, as in training. */
  row?: { video_id: string; profile: string | null; summary: string | null } | null;
  /** Names the video when there is no row (the file name): seeds the pick of profile dialogues. */
  videoId?: string;
  /** The new video's summary, if known (for runs trained with `static_profile: summary`). */
  summary?: string | null;
  /**
   * The run's dataset (`scanDataset` of its shards): the role's profiles and dialogue pools.
   * Needed unless `row` carries everything the mode uses.
   */
  dataset?: DatasetSummary | null;
  /** Where the dataset came from, for the description. */
  shards?: string;
}

export interface ChosenProfile {
  profile: string | null;
  /** One line: which profile, from where, and why. */
  description: string;
}

/** True when the recipe's mode needs the run's dataset for this role (not only the row). */
export function trainedProfileNeedsDataset(recipe: Recipe, row: { profile: string | null } | null | undefined): boolean {
  const mode = recipe.prompt.static_profile;
  if (mode === 'none' || mode === 'summary') return false;
  if (!row) return true;
  if (mode === 'profile') return false;
  return mode === 'dialogues' || !(row.profile && row.profile.trim() !== '');
}

/** The profile the run was trained with, for a reply of `role`, and a line saying which it is. */
export function trainedProfile(options: TrainedProfileOptions): ChosenProfile {
  const { recipe, tokenizer, role, row, dataset } = options;
  const mode = recipe.prompt.static_profile;
  const from = options.shards ?? recipe.data.shards;
  const settings = `prompt.static_profile ${mode}, at most ${recipe.prompt.profile_max_tokens} tokens`;
  if (mode === 'none') return { profile: null, description: 'none, as trained (prompt.static_profile none)' };

  // The sample as training would see it.
  let sampleProfile: string | null = row ? row.profile : null;
  let profileSource = row ? `row ${row.video_id}'s profile` : '';
  if (!row) {
    const profiles = dataset?.roleProfiles.get(role);
    if (profiles && profiles.size > 0) {
      const [text, videos] = [...profiles].reduce((best, e) => (e[1] > best[1] ? e : best));
      sampleProfile = text;
      const total = [...profiles.values()].reduce((a, b) => a + b, 0);
      profileSource =
        profiles.size === 1
          ? `${role}'s profile from ${from}`
          : `the most common of ${role}'s ${profiles.size} profiles in ${from} (${videos} of ${total} videos)`;
    }
  }
  const sample = {
    video_id: row?.video_id ?? options.videoId ?? '',
    dialogue_id: '',
    role,
    profile: sampleProfile,
    summary: row ? (options.summary ?? row.summary) : (options.summary ?? null),
  };
  const pools = dataset?.roleDialogues ?? new Map();
  const profile = staticProfile(tokenizer, sample, pools, {
    mode,
    dialogues: recipe.prompt.profile_dialogues,
    maxTokens: recipe.prompt.profile_max_tokens,
    seed: recipe.seed,
  });
  const used = mode === 'auto' ? (sample.profile && sample.profile.trim() ? 'profile' : 'dialogues') : mode;
  const known = dataset ? dataset.roleDialogues.has(role) || dataset.roleProfiles.has(role) : true;
  if (profile === null) {
    let why: string;
    if (!row && !known) why = `"${role}" is not a role of ${from} (roles there: ${rolesOf(dataset!).join(', ')})`;
    else if (used === 'summary') why = `the run was trained on video summaries and none is known for this video (give --summary)`;
    else if (used === 'profile') why = `${row ? `row ${row.video_id}` : `"${role}" in ${from}`} has no profile`;
    else why = `no other training dialogue of "${role}" to draw from`;
    return { profile: null, description: `none: ${why} (${settings})` };
  }
  let what: string;
  if (used === 'profile') what = profileSource;
  else if (used === 'summary') what = options.summary != null ? 'the summary given' : `row ${row!.video_id}'s summary`;
  else what = `${recipe.prompt.profile_dialogues} other dialogue${recipe.prompt.profile_dialogues === 1 ? '' : 's'} of ${role} from the training videos of ${from}`;
  return { profile, description: `${what}, as trained (${settings}): ${preview(profile)}` };
}

/** The first line of a text, cut at 60 characters, quoted. */
function preview(text: string): string {
  const chars = Array.from(text.trim().split('\n')[0]!);
  return JSON.stringify(chars.length > 60 ? `${chars.slice(0, 59).join('')}…` : chars.join(''));
}

function rolesOf(dataset: DatasetSummary): string[] {
  const roles = new Set([...dataset.roleProfiles.keys(), ...dataset.roleDialogues.keys()]);
  const list = [...roles].sort();
  return list.length > 8 ? [...list.slice(0, 8), `and ${list.length - 8} more`] : list;
}
