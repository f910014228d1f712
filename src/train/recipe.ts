/**
 * Training recipes: one YAML file per run configuration, validated strictly against a schema
 * (every unknown key, wrong type, and missing required key reported at once, each with its dotted
 * path, as torchtune's config errors do), with defaults, and with `key=value` overrides from the
 * command line typed by the schema (`optimizer.lr=1e-4`, `lora.target_modules=[q,v]`).
 */
import { promises as fs, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { RpvError } from '../util/errors.js';
import { BACKEND_NAMES, type BackendName } from '../model/backend.js';

/** A resolved recipe: every field present, defaults filled in. */
export interface Recipe {
  /** Run folder: checkpoints, metrics.jsonl, the resolved recipe. */
  output_dir: string;
  /** Seed of everything random: loader order, held-out split, LoRA init, dropout, sampling. */
  seed: number;
  model: {
    /** Local Hugging Face folder (config.json, *.safetensors, tokenizer.json). */
    path: string;
    /** tfjs backend: auto, tensorflow, webgpu, wasm or cpu (src/model/backend.ts). */
    backend: BackendName;
    /** Threads for the CPU backend (null: the backend's default). */
    threads: number | null;
  };
  data: {
    /** Shard folder or `http(s)://.../index.json`. */
    shards: string;
    /** Fraction of videos held out for evaluation, chosen by a hash of the video id. */
    heldout_fraction: number;
    batch_size: number;
    shuffle: boolean;
    workers: number;
    prefetch_bytes: number;
    /** false: the text-only ablation (no video tokens in the prompt). */
    use_video: boolean;
    /** Check shard bytes against the index's sha256 hashes as they are read (false: size only). */
    verify: boolean;
    /** Pack each step's samples into rows of up to prompt.max_tokens (src/train/packing.ts). */
    packing: boolean;
    /** Without packing: sort each step's samples by length before cutting micro-batches. */
    group_by_length: boolean;
  };
  prompt: {
    /** Samples longer than this (in tokens, video tokens included) are skipped and counted. */
    max_tokens: number;
    /** Source of the static profile in the system prompt. */
    static_profile: 'auto' | 'dialogues' | 'profile' | 'summary' | 'none';
    /** Cap on the static profile's length in tokens. */
    profile_max_tokens: number;
    /** How many other dialogues of the role make the static profile (mode `dialogues`). */
    profile_dialogues: number;
    /** Which of the role's turns carry the loss. */
    loss_on: 'all' | 'last';
    /** Put `Frame i at t s:` text before each frame's tokens. */
    frame_time_text: boolean;
  };
  lora: {
    r: number;
    alpha: number;
    dropout: number;
    target_modules: string[];
    rslora: boolean;
  };
  projector: {
    /** `internvl_mlp1`: an InternVL base's own mlp1, initialised from its pretrained weights. */
    type: 'mlp2x_gelu' | 'internvl_mlp1';
  };
  optimizer: {
    lr: number;
    /** Learning rate of the projector (null: `lr`). */
    projector_lr: number | null;
    weight_decay: number;
    beta1: number;
    beta2: number;
    eps: number;
    /** Global-norm clipping threshold; 0 disables clipping. */
    max_grad_norm: number;
  };
  scheduler: {
    type: 'cosine' | 'linear' | 'constant';
    /** Warm-up as a fraction of the total optimizer steps (ignored when warmup_steps is set). */
    warmup_ratio: number;
    warmup_steps: number | null;
    /** Final learning rate as a fraction of the peak. */
    min_lr_ratio: number;
  };
  train: {
    /** Optimizer steps; null: `epochs` over the training split. */
    max_steps: number | null;
    epochs: number;
    grad_accum_steps: number;
    /** Stage 1: optimizer steps that train the projector alone before LoRA joins. */
    projector_warmup_steps: number;
    log_every_steps: number;
    /**
     * Recompute each decoder layer in the backward pass instead of keeping its activations
     * (torch.utils.checkpoint per layer, as HF's gradient_checkpointing): activation memory drops
     * from every layer's intermediates to one hidden state per layer, for one more forward pass.
     * auto: on when the activations would not fit in half the memory the tensors can use.
     */
    gradient_checkpointing: 'auto' | boolean;
    /**
     * A step whose loss or gradient norm is NaN or infinite is never applied. stop: the run
     * stops there with an error; skip: the step is counted and training goes on, stopping after
     * NONFINITE_STEPS_IN_ROW such steps in a row.
     */
    on_nonfinite: 'stop' | 'skip';
    /** `freeze`: the projector keeps its initial (pretrained) weights; LoRA alone trains. */
    projector: 'train' | 'freeze';
  };
  eval: {
    /** Held-out loss and perplexity every N optimizer steps (0: only at the end). */
    every_steps: number;
    /** Cap on held-out batches per evaluation (null: all). */
    max_batches: number | null;
    /** Words whose tokens in the role's turns get their own held-out loss (e.g. colours). */
    focus_words: string[];
  };
  checkpoint: {
    /** Checkpoint every N optimizer steps (0: only at the end and on Ctrl-C). */
    every_steps: number;
    /** Checkpoints kept (oldest removed first); the final one is always kept. */
    keep_last: number;
  };
  /** Checkpoint folder to continue from. */
  resume: string | null;
  /**
   * Replace the run already in `output_dir` (its checkpoints, metrics.jsonl, adapter/), as HF's
   * TrainingArguments.overwrite_output_dir; without it such a folder needs `resume=`.
   */
  overwrite_output_dir: boolean;
  /**
   * Take over `output_dir/train.lock` held by a process of another host, which this host cannot
   * see: for when that run is known to be gone (its machine was lost). Refused by default; a
   * lock whose process still runs on this host is never taken.
   */
  break_lock: boolean;
}

type Kind = 'string' | 'number' | 'integer' | 'boolean' | 'auto|boolean' | 'string[]';

interface LeafSpec {
  kind: Kind;
  /** Absent: the key is required. */
  default?: unknown;
  nullable?: boolean;
  min?: number;
  max?: number;
  /** Exclusive minimum. */
  above?: number;
  choices?: readonly string[];
  /** An empty string or list is refused (a path that names nothing, a LoRA that adapts nothing). */
  nonEmpty?: string;
}
interface GroupSpec {
  fields: Record<string, Spec>;
}
type Spec = LeafSpec | GroupSpec;

const isGroup = (s: Spec): s is GroupSpec => 'fields' in s;

export const RECIPE_SCHEMA: GroupSpec = {
  fields: {
    output_dir: { kind: 'string', nonEmpty: 'the run folder' },
    seed: { kind: 'integer', default: 0, min: 0 },
    model: {
      fields: {
        path: { kind: 'string', nonEmpty: 'the model folder' },
        backend: { kind: 'string', default: 'auto', choices: [...BACKEND_NAMES] },
        threads: { kind: 'integer', default: null, nullable: true, min: 1 },
      },
    },
    data: {
      fields: {
        shards: { kind: 'string', nonEmpty: 'the shard folder or index.json URL' },
        heldout_fraction: { kind: 'number', default: 0.1, min: 0, max: 0.9 },
        batch_size: { kind: 'integer', default: 4, min: 1 },
        shuffle: { kind: 'boolean', default: true },
        workers: { kind: 'integer', default: 1, min: 0 },
        prefetch_bytes: { kind: 'integer', default: 512 * 1024 * 1024, min: 1 },
        use_video: { kind: 'boolean', default: true },
        verify: { kind: 'boolean', default: true },
        packing: { kind: 'boolean', default: false },
        group_by_length: { kind: 'boolean', default: false },
      },
    },
    prompt: {
      fields: {
        max_tokens: { kind: 'integer', default: 1024, min: 8 },
        static_profile: { kind: 'string', default: 'auto', choices: ['auto', 'dialogues', 'profile', 'summary', 'none'] },
        profile_max_tokens: { kind: 'integer', default: 256, min: 0 },
        profile_dialogues: { kind: 'integer', default: 2, min: 0 },
        loss_on: { kind: 'string', default: 'all', choices: ['all', 'last'] },
        frame_time_text: { kind: 'boolean', default: true },
      },
    },
    lora: {
      fields: {
        r: { kind: 'integer', default: 8, min: 1 },
        alpha: { kind: 'number', default: 16, above: 0 },
        dropout: { kind: 'number', default: 0.05, min: 0, max: 0.99 },
        target_modules: { kind: 'string[]', default: ['q', 'k', 'v', 'o'], choices: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], nonEmpty: 'LoRA needs at least one module to adapt' },
        rslora: { kind: 'boolean', default: false },
      },
    },
    projector: {
      fields: {
        type: { kind: 'string', default: 'mlp2x_gelu', choices: ['mlp2x_gelu', 'internvl_mlp1'] },
      },
    },
    optimizer: {
      fields: {
        lr: { kind: 'number', default: 2e-4, above: 0 },
        projector_lr: { kind: 'number', default: null, nullable: true, above: 0 },
        weight_decay: { kind: 'number', default: 0.01, min: 0 },
        beta1: { kind: 'number', default: 0.9, min: 0, max: 0.999999 },
        beta2: { kind: 'number', default: 0.999, min: 0, max: 0.999999 },
        eps: { kind: 'number', default: 1e-8, above: 0 },
        max_grad_norm: { kind: 'number', default: 1.0, min: 0 },
      },
    },
    scheduler: {
      fields: {
        type: { kind: 'string', default: 'cosine', choices: ['cosine', 'linear', 'constant'] },
        warmup_ratio: { kind: 'number', default: 0.03, min: 0, max: 1 },
        warmup_steps: { kind: 'integer', default: null, nullable: true, min: 0 },
        min_lr_ratio: { kind: 'number', default: 0, min: 0, max: 1 },
      },
    },
    train: {
      fields: {
        max_steps: { kind: 'integer', default: null, nullable: true, min: 1 },
        epochs: { kind: 'number', default: 1, above: 0 },
        grad_accum_steps: { kind: 'integer', default: 1, min: 1 },
        projector_warmup_steps: { kind: 'integer', default: 0, min: 0 },
        log_every_steps: { kind: 'integer', default: 1, min: 1 },
        gradient_checkpointing: { kind: 'auto|boolean', default: 'auto' },
        on_nonfinite: { kind: 'string', default: 'stop', choices: ['stop', 'skip'] },
        projector: { kind: 'string', default: 'train', choices: ['train', 'freeze'] },
      },
    },
    eval: {
      fields: {
        every_steps: { kind: 'integer', default: 50, min: 0 },
        max_batches: { kind: 'integer', default: null, nullable: true, min: 1 },
        focus_words: { kind: 'string[]', default: [] },
      },
    },
    checkpoint: {
      fields: {
        every_steps: { kind: 'integer', default: 100, min: 0 },
        keep_last: { kind: 'integer', default: 2, min: 1 },
      },
    },
    resume: { kind: 'string', default: null, nullable: true, nonEmpty: 'a run or checkpoint folder; null for a new run' },
    overwrite_output_dir: { kind: 'boolean', default: false },
    break_lock: { kind: 'boolean', default: false },
  },
};

/** Every dotted key the schema knows, leaves only (`optimizer.lr`, ...). */
export function recipeKeys(group: GroupSpec = RECIPE_SCHEMA, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, s] of Object.entries(group.fields)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (isGroup(s)) out.push(...recipeKeys(s, p));
    else out.push(p);
  }
  return out;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `a list ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

function expected(spec: LeafSpec): string {
  let e: string;
  switch (spec.kind) {
    case 'string':
      e = spec.choices ? `one of ${spec.choices.join(', ')}` : 'a string';
      break;
    case 'string[]':
      e = spec.choices ? `a list of ${spec.choices.join(', ')}` : 'a list of strings';
      break;
    case 'boolean':
      e = 'true or false';
      break;
    case 'auto|boolean':
      e = 'auto, true or false';
      break;
    default: {
      e = spec.kind === 'integer' ? 'an integer' : 'a number';
      const bounds: string[] = [];
      if (spec.min !== undefined) bounds.push(`>= ${spec.min}`);
      if (spec.above !== undefined) bounds.push(`> ${spec.above}`);
      if (spec.max !== undefined) bounds.push(`<= ${spec.max}`);
      if (bounds.length) e += ` ${bounds.join(' and ')}`;
    }
  }
  return spec.nullable ? `${e} or null` : e;
}

/** Every field optional at every depth: what `train()` and `dryRun()` accept and resolve. */
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object | null ? DeepPartial<NonNullable<T[K]>> | Extract<T[K], null> : T[K] };
/**
 * A recipe as a program writes it: the required keys (`output_dir`, `model.path`, `data.shards`)
 * and any others; the rest take the schema's defaults, and everything is validated as a YAML
 * recipe is (`resolveRecipe`).
 */
export type RecipeInput = DeepPartial<Recipe>;

/** Check one leaf value; returns an error text or undefined. */
function checkLeaf(spec: LeafSpec, value: unknown): string | undefined {
  const bad = `expected ${expected(spec)}, found ${describe(value)}`;
  if (value === null) return spec.nullable ? undefined : bad;
  if (spec.nonEmpty !== undefined) {
    if (typeof value === 'string' && value.trim() === '') return `expected a non-empty string (${spec.nonEmpty}), found an empty string`;
    if (Array.isArray(value) && value.length === 0) return `expected ${expected(spec).replace(/^a list of /, 'at least one of ')}, found an empty list (${spec.nonEmpty})`;
  }
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string') return bad;
      if (spec.choices && !spec.choices.includes(value)) return bad;
      return undefined;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : bad;
    case 'auto|boolean':
      return typeof value === 'boolean' || value === 'auto' ? undefined : bad;
    case 'string[]':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return bad;
      if (spec.choices && !value.every((v) => spec.choices!.includes(v as string))) return bad;
      return undefined;
    default: {
      if (typeof value !== 'number' || !Number.isFinite(value)) return bad;
      if (spec.kind === 'integer' && !Number.isInteger(value)) return bad;
      if (spec.min !== undefined && value < spec.min) return bad;
      if (spec.above !== undefined && value <= spec.above) return bad;
      if (spec.max !== undefined && value > spec.max) return bad;
      return undefined;
    }
  }
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

function suggestion(path: string): string {
  let best = '';
  let bestD = Infinity;
  for (const key of recipeKeys()) {
    const d = editDistance(path, key);
    if (d < bestD) {
      bestD = d;
      best = key;
    }
  }
  return bestD <= Math.max(2, Math.floor(path.length / 4)) ? ` (did you mean ${best}?)` : '';
}

/** Validate `raw` and fill defaults; pushes every problem to `errors` as `path: message`. */
function resolveGroup(group: GroupSpec, raw: unknown, prefix: string, errors: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let input: Record<string, unknown> = {};
  if (raw === undefined || raw === null) input = {};
  else if (typeof raw !== 'object' || Array.isArray(raw)) {
    errors.push(`${prefix || '(top level)'}: expected a mapping, found ${describe(raw)}`);
  } else input = raw as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!(key in group.fields)) {
      const p = prefix ? `${prefix}.${key}` : key;
      errors.push(`${p}: unknown key${suggestion(p)}`);
    }
  }
  for (const [key, spec] of Object.entries(group.fields)) {
    const p = prefix ? `${prefix}.${key}` : key;
    const value = input[key];
    if (isGroup(spec)) {
      out[key] = resolveGroup(spec, value, p, errors);
      continue;
    }
    if (value === undefined) {
      if (!('default' in spec)) errors.push(`${p}: required, expected ${expected(spec)}`);
      else out[key] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
      continue;
    }
    const problem = checkLeaf(spec, value);
    if (problem) errors.push(`${p}: ${problem}`);
    else out[key] = Array.isArray(value) ? [...value] : value;
  }
  return out;
}

function leafSpec(path: string): LeafSpec | GroupSpec | undefined {
  let spec: Spec = RECIPE_SCHEMA;
  for (const part of path.split('.')) {
    if (!isGroup(spec)) return undefined;
    const next: Spec | undefined = spec.fields[part];
    if (!next) return undefined;
    spec = next;
  }
  return spec;
}

/**
 * Parse a command-line `key=value` into its path and a value typed by the schema: numbers for
 * numeric keys, `true`/`false` for booleans, `null` where allowed, `[a,b]` or `a,b` for lists,
 * anything else a string. Unknown keys and unparsable values are reported as errors.
 */
export function parseOverride(text: string, errors: string[]): { path: string; value: unknown } | undefined {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    errors.push(`override ${JSON.stringify(text)}: expected key=value`);
    return undefined;
  }
  const path = text.slice(0, eq).trim();
  const rawValue = text.slice(eq + 1).trim();
  const spec = leafSpec(path);
  if (!spec) {
    errors.push(`${path}: unknown key${suggestion(path)} (override ${text})`);
    return undefined;
  }
  if (isGroup(spec)) {
    errors.push(`${path}: is a section, override one of its keys (${recipeKeys(spec, path).join(', ')})`);
    return undefined;
  }
  let value: unknown;
  if (rawValue === 'null' || rawValue === '~') value = null;
  else if (spec.kind === 'string') value = rawValue;
  else if (spec.kind === 'string[]') {
    const inner = rawValue.startsWith('[') && rawValue.endsWith(']') ? rawValue.slice(1, -1) : rawValue;
    value = inner.trim() === '' ? [] : inner.split(',').map((s) => s.trim().replace(/^["']|["']$/g, ''));
  } else if (spec.kind === 'boolean' || spec.kind === 'auto|boolean') {
    value = rawValue === 'true' ? true : rawValue === 'false' ? false : rawValue;
  } else {
    const n = Number(rawValue);
    value = rawValue !== '' && Number.isFinite(n) ? n : rawValue;
  }
  return { path, value };
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let obj = target;
  for (const part of parts.slice(0, -1)) {
    const next = obj[part];
    if (next === undefined || next === null || typeof next !== 'object' || Array.isArray(next)) obj[part] = {};
    obj = obj[part] as Record<string, unknown>;
  }
  obj[parts[parts.length - 1]!] = value;
}

/**
 * Resolve a recipe from its parsed YAML and overrides. Throws one RpvError listing every problem
 * (`<source>: N errors:` then one `  path: message` line each).
 */
export function resolveRecipe(raw: unknown, overrides: string[] = [], source = 'recipe'): Recipe {
  const errors: string[] = [];
  // An empty or comment-only file parses to null: a recipe of overrides alone.
  const merged = raw === null || raw === undefined ? {} : typeof raw === 'object' && !Array.isArray(raw) ? structuredClone(raw as Record<string, unknown>) : raw;
  for (const text of overrides) {
    const parsed = parseOverride(text, errors);
    if (parsed && merged && typeof merged === 'object' && !Array.isArray(merged)) {
      setPath(merged as Record<string, unknown>, parsed.path, parsed.value);
    }
  }
  const recipe = resolveGroup(RECIPE_SCHEMA, merged, '', errors) as unknown as Recipe;
  if (errors.length === 0) crossCheck(recipe, errors);
  if (errors.length > 0) {
    throw new RpvError(`${source}: ${errors.length} error${errors.length === 1 ? '' : 's'}:\n${errors.map((e) => `  ${e}`).join('\n')}`);
  }
  return recipe;
}

function crossCheck(recipe: Recipe, errors: string[]): void {
  if (recipe.train.max_steps !== null && recipe.train.projector_warmup_steps >= recipe.train.max_steps) {
    errors.push(
      `train.projector_warmup_steps: expected fewer than train.max_steps (${recipe.train.max_steps}), found ${recipe.train.projector_warmup_steps}`,
    );
  }
  if (recipe.train.projector === 'freeze' && recipe.train.projector_warmup_steps > 0) {
    errors.push('train.projector_warmup_steps: expected 0 when train.projector is freeze (a frozen projector cannot be warmed up)');
  }
  if (recipe.data.packing && recipe.data.group_by_length) {
    errors.push('data.group_by_length: expected false when data.packing is true (packed rows are already filled; choose one)');
  }
  if (!recipe.data.use_video && recipe.train.projector_warmup_steps > 0) {
    errors.push('train.projector_warmup_steps: expected 0 when data.use_video is false (there is no projector to warm up)');
  }
}

/** rpv's own recipes/ folder (beside src/ and dist/). */
export const SHIPPED_RECIPES_DIR = fileURLToPath(new URL('../../recipes/', import.meta.url));

/**
 * The recipe file to read for `file`: itself when it exists; else, for `recipes/<name>.yaml`
 * naming one of rpv's shipped recipes, that shipped file, so that `rpv train
 * recipes/qwen2.5-0.5b-video60k.yaml ...` runs from any folder as it does in the checkout; else
 * `file` (reading it then fails naming it).
 */
export function shippedRecipeFile(file: string): string {
  if (existsSync(file)) return file;
  const m = /^recipes\/([^/]+\.ya?ml)$/.exec(path.normalize(file).split(path.sep).join('/'));
  const shipped = m ? path.join(SHIPPED_RECIPES_DIR, m[1]!) : null;
  return shipped && existsSync(shipped) ? shipped : file;
}

/**
 * Read, parse and resolve a recipe file; YAML syntax errors name the file, line and column. With
 * `checkPlaceholders`, placeholder paths left as they are and missing here are errors too
 * (`placeholderProblems`), all listed at once.
 */
export async function loadRecipe(file: string, overrides: string[] = [], options: { checkPlaceholders?: boolean } = {}): Promise<Recipe> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RpvError(`train: cannot read recipe ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const recipe = parseRecipe(text, overrides, file);
  if (options.checkPlaceholders) {
    const problems = await placeholderProblems(text, recipe);
    if (problems.length > 0) {
      throw new RpvError(`${file}: ${problems.length} error${problems.length === 1 ? '' : 's'}:\n${problems.map((e) => `  ${e}`).join('\n')}`);
    }
  }
  return recipe;
}

/**
 * With `train.max_steps` unset the run's length comes from the data: a projector-only stage as
 * long as the run (`train.projector_warmup_steps`) would leave LoRA untrained, so it is an error.
 */
export function checkStageLengths(recipe: Recipe, totalSteps: number, stepsPerEpoch: number): void {
  const warmup = recipe.train.projector_warmup_steps;
  if (recipe.train.max_steps !== null || warmup < totalSteps) return;
  throw new RpvError(
    `train: train.projector_warmup_steps ${warmup} is not below the run's ${totalSteps} optimizer step${totalSteps === 1 ? '' : 's'} ` +
      `(train.max_steps unset: train.epochs ${recipe.train.epochs} x ${stepsPerEpoch} step${stepsPerEpoch === 1 ? '' : 's'} per epoch), so LoRA would never train; ` +
      `lower train.projector_warmup_steps, or set train.max_steps above it`,
  );
}

/**
 * The paths a recipe file marks as placeholders (`path: /models/X   # PLACEHOLDER: what it is`)
 * that the resolved recipe still holds (not overridden), which do not exist on this machine: one
 * line each, `data.shards: /data/video60k-shards (the recipe's placeholder path) does not exist;
 * pass data.shards=<rpv shard folder or index.json URL>`. URLs are not checked.
 */
export async function placeholderProblems(text: string, recipe: Recipe): Promise<string[]> {
  const doc = YAML.parseDocument(text);
  const marked: { key: string; what: string }[] = [];
  YAML.visit(doc, {
    Pair(_, pair, ancestors) {
      const value = pair.value as { comment?: string | null } | null;
      const match = value?.comment?.match(/^\s*PLACEHOLDER:?\s*(.*)$/);
      if (!match || !YAML.isScalar(pair.key)) return;
      const parents = ancestors.filter((a) => YAML.isPair(a)).map((a) => String((a as YAML.Pair<YAML.Scalar>).key.value));
      marked.push({ key: [...parents, String(pair.key.value)].join('.'), what: match[1]!.trim() || 'a path on this machine' });
    },
  });
  const fileValue = doc.toJS() as Record<string, unknown>;
  const problems: string[] = [];
  for (const { key, what } of marked) {
    const get = (obj: unknown) => key.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
    const value = get(recipe);
    if (typeof value !== 'string' || value !== get(fileValue) || /^https?:\/\//.test(value)) continue;
    if (await fs.stat(value).then(() => true, () => false)) continue;
    problems.push(`${key}: ${value} (the recipe's placeholder path) does not exist; pass ${key}=<${what}>`);
  }
  return problems;
}

/** Parse and resolve recipe YAML text. */
export function parseRecipe(text: string, overrides: string[] = [], source = 'recipe'): Recipe {
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      return `  ${pos ? `line ${pos.line} column ${pos.col}: ` : ''}${e.message.split('\n')[0]}`;
    });
    throw new RpvError(`${source}: invalid YAML:\n${lines.join('\n')}`);
  }
  return resolveRecipe(doc.toJS(), overrides, source);
}

/** The recipe as YAML, keys in schema order (what a run folder stores and `--dry-run` prints). */
export function formatRecipe(recipe: Recipe): string {
  return YAML.stringify(recipe, { lineWidth: 0 });
}
