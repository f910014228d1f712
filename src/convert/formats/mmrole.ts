import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Turn } from '../../shard/schema.js';
import type { InputFormat, ParsedItem, SourceRecord } from '../record.js';

/**
 * MMRole-Data (Dai et al., ICLR 2025; huggingface.co/datasets/YanqiDai/MMRole_dataset): image
 * role-play dialogues. Files are JSON arrays of samples
 * `{ id, system, image, conversations: [{ from: 'user' | 'assistant', value }, ...], role, script, other_role }`
 * (`data/train/train_85k.json`, `data/test/**`; MMRole-Eval's answer and review files add fields,
 * ignored here). The first user message is MMRole's whole prompt, sections separated by blank lines:
 * the task, `The description of <role> is as follows:`, optionally `The auxiliary information of
 * the image is as follows:`, `The conversation history between A and B is as follows:` with
 * `[Speaker]: text` lines, and `Please respond to the following words of <other> ...:\n<words>`
 * (or `Please initiate the conversation with <other> ...`). It becomes structured turns:
 * the history, then the other party's words, then the role's answer; later messages alternate.
 *
 * - profile: the role's entry in `profiles/**\/profiles.json` (MMRole's profile folder, found under
 *   the export root), else the description section of the prompt.
 * - summary: the image's auxiliary information, when given.
 * - language: `zh` or `en`, from the prompt's `in Chinese` / `in English`, else from the text.
 * - media: the image becomes a one-frame video (`media: 'image'`). Image paths are relative to the
 *   dataset's `images/` folder when the root has one, else to the root.
 * - id: samples of one role about one image share a shard row (`<role>/<image>`); each sample is
 *   one dialogue, its id MMRole's `id`.
 * - A missing image is skipped with a reason, or, with `missingMedia: 'text-only'`, the sample is
 *   kept as a text-only row.
 */

/** Options of the MMRole reader beyond the converter's `root`. */
export interface MmroleReadOptions {
  root: string;
  /** What to do when a sample's image file does not exist: skip it (default) or keep it text-only. */
  missingMedia?: 'skip' | 'text-only';
}

type Json = Record<string, unknown>;

const SECTION_SEP = /\n{3,}/;

/** Files an MMRole input holds: the file itself, or the JSON files of a folder (its `data/` when present). */
async function inputFiles(input: string): Promise<string[]> {
  const stat = await fs.stat(input);
  if (stat.isFile()) return [input];
  let base = input;
  try {
    if ((await fs.stat(path.join(input, 'data'))).isDirectory()) base = path.join(input, 'data');
  } catch {
    // no data/ folder: read the folder itself
  }
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!['profiles', 'images', 'RM_data', 'dialogues'].includes(entry.name)) await walk(full);
      } else if (entry.name.endsWith('.json')) out.push(full);
    }
  };
  await walk(base);
  return out;
}

/** Profiles from every `profiles.json` under `<root>/profiles` (role name -> profile text). */
export async function readMmroleProfiles(root: string): Promise<Map<string, string>> {
  const profiles = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.name === 'profiles.json') {
        try {
          const data = JSON.parse(await fs.readFile(full, 'utf8')) as unknown;
          if (data && typeof data === 'object' && !Array.isArray(data)) {
            for (const [name, text] of Object.entries(data as Json)) if (typeof text === 'string') profiles.set(name, text.trim());
          }
        } catch {
          // an unreadable profiles.json leaves the prompt's own description in use
        }
      }
    }
  };
  await walk(path.join(root, 'profiles'));
  return profiles;
}

/** The structured view of MMRole's first prompt. */
export interface MmrolePrompt {
  /** `The description of <role> is as follows:` section of the role itself. */
  description: string | null;
  /** The image's auxiliary information. */
  auxiliary: string | null;
  /** Earlier turns, `[Speaker]: text`. */
  history: Turn[];
  /** The other party's words the role answers; null when the role opens the conversation. */
  words: string | null;
  /** `en` / `zh` when the prompt names the reply language. */
  language: string | null;
}

/** Split MMRole's prompt into its sections; null when it does not look like one. */
export function parseMmrolePrompt(prompt: string, role: string): MmrolePrompt | null {
  const sections = prompt.replace(/\r\n/g, '\n').split(SECTION_SEP);
  const result: MmrolePrompt = { description: null, auxiliary: null, history: [], words: null, language: null };
  let closing = false;
  for (const section of sections) {
    const [head = '', ...rest] = section.split('\n');
    const body = rest.join('\n').trim();
    if (head.startsWith(`The description of ${role} is as follows:`)) result.description = body;
    else if (head.startsWith('The auxiliary information of the image is as follows:')) result.auxiliary = body;
    else if (head.startsWith('The conversation history between ')) result.history = parseHistory(body);
    else if (head.startsWith('Please respond to the following words of ')) {
      result.words = body;
      closing = true;
    } else if (head.startsWith('Please initiate the conversation')) closing = true;
    if (closing) {
      const lang = /\bin (English|Chinese)\b/.exec(head)?.[1];
      if (lang) result.language = lang === 'English' ? 'en' : 'zh';
    }
  }
  return closing ? result : null;
}

/** `[Speaker]: text` lines; a line without a bracketed speaker continues the previous turn. */
function parseHistory(body: string): Turn[] {
  const turns: Turn[] = [];
  for (const line of body.split('\n')) {
    const m = /^\[([^\]]+)\]\s*[:：]\s?(.*)$/.exec(line);
    if (m) turns.push({ speaker: m[1]!.trim(), text: m[2]! });
    else if (turns.length > 0) turns[turns.length - 1]!.text += `\n${line}`;
  }
  return turns.map((t) => ({ speaker: t.speaker, text: t.text.trim() })).filter((t) => t.text !== '');
}

const CJK = /[\u3400-\u9fff]/;

async function exists(file: string): Promise<boolean> {
  try {
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** Read one MMRole JSON file: every sample becomes a record or a skip with its reason. */
async function* readFile(file: string, options: MmroleReadOptions, profiles: Map<string, string>, imageBase: string): AsyncGenerator<ParsedItem> {
  const source = path.relative(options.root, file) || path.basename(file);
  let data: unknown;
  try {
    const bytes = await fs.readFile(file);
    data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    const reason = err instanceof TypeError ? 'invalid UTF-8: the file is not valid UTF-8 text' : `malformed JSON: ${(err as Error).message}`;
    yield { kind: 'skip', skip: { source, reason } };
    return;
  }
  if (!Array.isArray(data)) {
    yield { kind: 'skip', skip: { source, reason: 'malformed JSON: expected an array of MMRole samples' } };
    return;
  }
  for (let i = 0; i < data.length; i++) {
    const line = i + 1;
    const skip = (reason: string): ParsedItem => ({ kind: 'skip', skip: { source, line, reason } });
    const item = data[i] as Json;
    if (!item || typeof item !== 'object' || Array.isArray(item)) {
      yield skip('wrong type: expected a JSON object');
      continue;
    }
    const missing = ['id', 'role', 'conversations'].find((k) => item[k] === undefined || item[k] === null || item[k] === '');
    if (missing) {
      yield skip(`missing field: "${missing}"`);
      continue;
    }
    const id = String(item.id);
    const role = String(item.role).trim();
    const otherRole = typeof item.other_role === 'string' && item.other_role.trim() ? item.other_role.trim() : 'a curious human';
    const conversations = item.conversations;
    if (!Array.isArray(conversations) || conversations.length === 0) {
      yield skip(`wrong type: sample ${id}: "conversations" must be a non-empty array`);
      continue;
    }
    const turns: Turn[] = [];
    let prompt: MmrolePrompt | null = null;
    let bad: string | null = null;
    for (let t = 0; t < conversations.length && !bad; t++) {
      const turn = conversations[t] as Json;
      const value = turn?.value;
      const from = turn?.from;
      if (typeof value !== 'string' || value.trim() === '') {
        bad = `empty turn: sample ${id} turn ${t + 1}: empty text`;
        break;
      }
      const isRole = from === 'assistant' || from === 'gpt' || turn.role === role;
      if (isRole) {
        turns.push({ speaker: role, text: value.trim() });
      } else if (t === 0) {
        const text = value.replace(/^Picture \d+: <img>[^<]*<\/img>\n?/, '');
        prompt = parseMmrolePrompt(text, role);
        if (prompt) {
          // Two-party dialogues: the history calls the curious human `human`; any speaker other
          // than the role is the other party, named as in the sample.
          turns.push(...prompt.history.map((h) => ({ speaker: h.speaker === role ? role : otherRole, text: h.text })));
          if (prompt.words) turns.push({ speaker: otherRole, text: prompt.words });
        } else turns.push({ speaker: otherRole, text: text.trim() });
      } else turns.push({ speaker: otherRole, text: value.trim() });
    }
    if (bad) {
      yield skip(bad);
      continue;
    }
    if (!turns.some((t) => t.speaker === role)) {
      yield skip(`empty dialogue: sample ${id} has no turn of the role "${role}" (no answer to train on)`);
      continue;
    }
    const image = typeof item.image === 'string' && item.image.trim() ? item.image.trim() : null;
    let video: string | null = null;
    if (image) {
      const relative = path.join(imageBase, image);
      if (await exists(path.resolve(options.root, relative))) video = relative;
      else if (options.missingMedia !== 'text-only') {
        yield skip(`missing image: ${relative} (sample ${id})`);
        continue;
      }
    }
    const allText = turns.map((t) => t.text).join('');
    const record: SourceRecord = {
      file: source,
      line,
      id: `${role}/${image ?? id}`,
      video,
      ...(video ? { media: 'image' as const } : {}),
      role,
      language: prompt?.language ?? (CJK.test(allText) ? 'zh' : 'en'),
      platform: 'mmrole',
      profile: profiles.get(role) ?? prompt?.description ?? null,
      summary: prompt?.auxiliary ?? null,
      dialogues: [{ id, turns }],
    };
    yield { kind: 'record', record };
  }
}

export const mmroleFormat: InputFormat = {
  name: 'mmrole',
  description: 'MMRole-Data: JSON arrays of {id, system, image, conversations, role, script, other_role}, profiles/ folder',
  async detect(input: string): Promise<boolean> {
    try {
      const files = await inputFiles(input);
      const first = files[0];
      if (!first) return false;
      const handle = await fs.open(first, 'r');
      try {
        const buffer = Buffer.alloc(64 * 1024);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        const head = buffer.subarray(0, bytesRead).toString('utf8');
        return head.trimStart().startsWith('[') && head.includes('"conversations"') && head.includes('"other_role"');
      } finally {
        await handle.close();
      }
    } catch {
      return false;
    }
  },
  async *read(input: string, options: { root: string; missingMedia?: 'skip' | 'text-only' }): AsyncGenerator<ParsedItem> {
    const profiles = await readMmroleProfiles(options.root);
    let imageBase = '';
    try {
      if ((await fs.stat(path.join(options.root, 'images'))).isDirectory()) imageBase = 'images';
    } catch {
      // images are relative to the root itself
    }
    for (const file of await inputFiles(input)) yield* readFile(file, options, profiles, imageBase);
  },
};
