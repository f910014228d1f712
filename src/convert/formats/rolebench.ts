import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { InputFormat, ParsedItem, SourceRecord } from '../record.js';
import { firstJsonLine, guessLanguage, jsonlFiles } from './chatharuhi.js';
import { readJsonLinesFile as readJsonLines } from './json-input.js';

/**
 * RoleBench (Wang et al. 2023, RoleLLM; huggingface.co/datasets/ZenMoore/RoleBench): role-specific
 * and general instructions answered in the voice of 100 roles. Data files are JSON lines
 * `{ role, question, generated: [answer, ...] }` (`rolebench-eng/<split>/{general,role_specific}/{train,test}.jsonl`,
 * `rolebench-zh/...`); role profiles are `profiles-eng/desc.json` and `profiles-zh/desc.json`,
 * objects mapping a role's name to its description.
 *
 * Each line becomes one text-only row (no video) of the role: one dialogue per distinct
 * generated answer, `[{ speaker: 'user', text: question }, { speaker: role, text: answer }]`
 * (RoleBench keeps several reference answers per question). The profile is the role's entry in
 * any `desc.json` found beside the input, in its `profiles-eng` / `profiles-zh` neighbours, or
 * under the export root. `rolegpt_baseline.jsonl` files (a baseline model's outputs, not ground
 * truth) are left out when a folder is read.
 */

/** The speaker of RoleBench's instructions. */
export const ROLEBENCH_USER = 'user';

const isBaseline = (name: string) => path.basename(name) === 'rolegpt_baseline.jsonl' || /(^|\/)(profiles|instructions)-(eng|zh)\//.test(name);

/** Role descriptions from every `desc.json` near the input (input's folders up to the root). */
export async function readRolebenchProfiles(input: string, root: string): Promise<Map<string, string>> {
  const profiles = new Map<string, string>();
  const dirs: string[] = [];
  let dir = path.resolve(input);
  try {
    if ((await fs.stat(dir)).isFile()) dir = path.dirname(dir);
  } catch {
    // a missing input fails later with its own message
  }
  const top = path.resolve(root);
  for (;;) {
    dirs.push(dir);
    const parent = path.dirname(dir);
    if (dir === top || parent === dir || !dir.startsWith(top)) break;
    dir = parent;
  }
  if (!dirs.includes(top)) dirs.push(top);
  for (const d of dirs) {
    for (const candidate of [path.join(d, 'desc.json'), path.join(d, 'profiles-eng', 'desc.json'), path.join(d, 'profiles-zh', 'desc.json')]) {
      let data: unknown;
      try {
        data = JSON.parse(await fs.readFile(candidate, 'utf8'));
      } catch {
        continue;
      }
      if (data && typeof data === 'object' && !Array.isArray(data)) {
        for (const [name, text] of Object.entries(data as Record<string, unknown>)) {
          if (typeof text === 'string' && !profiles.has(name)) profiles.set(name, text.trim());
        }
      }
    }
  }
  return profiles;
}

/** One RoleBench line as a record, or the reason it cannot be one. */
export function rolebenchRecord(value: unknown, source: string, line: number, profiles: Map<string, string>): SourceRecord | string {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return 'wrong type: expected a JSON object';
  const row = value as Record<string, unknown>;
  for (const key of ['role', 'question']) {
    if (row[key] === undefined || row[key] === null) return `missing field: "${key}"`;
    if (typeof row[key] !== 'string') return `wrong type: "${key}" must be a string`;
    if (!(row[key] as string).trim()) return `empty field: "${key}" is empty`;
  }
  const question = (row.question as string).trim();
  if (row.generated === undefined || row.generated === null) return 'missing field: "generated"';
  if (!Array.isArray(row.generated)) return `wrong type: "generated" must be an array of answers, found a ${typeof row.generated}`;
  const role = (row.role as string).trim();
  const answers: string[] = [];
  for (let i = 0; i < row.generated.length; i++) {
    const a = row.generated[i];
    if (typeof a !== 'string') return `wrong type: "generated" ${i + 1} must be a string, found ${JSON.stringify(a)?.slice(0, 40)}`;
    const t = a.trim();
    if (t && !answers.includes(t)) answers.push(t);
  }
  if (answers.length === 0) return 'empty dialogue: "generated" holds no non-empty answer';
  return {
    file: source,
    line,
    id: `${source.replace(/\.jsonl$/, '')}:${line}`,
    video: null,
    role,
    language: guessLanguage([question, ...answers]),
    platform: 'rolebench',
    profile: profiles.get(role) ?? null,
    summary: null,
    dialogues: answers.map((answer, k) => ({
      id: `${line}-${k + 1}`,
      turns: [
        { speaker: ROLEBENCH_USER, text: question },
        { speaker: role, text: answer },
      ],
    })),
  };
}

export const rolebenchFormat: InputFormat = {
  name: 'rolebench',
  description: 'RoleBench: JSON lines of {role, question, generated: [..]}, profiles in desc.json',
  async detect(input: string): Promise<boolean> {
    const first = await firstJsonLine(input, isBaseline);
    return !!first && 'role' in first && 'question' in first && Array.isArray(first.generated);
  },
  async *read(input: string, options: { root: string }): AsyncGenerator<ParsedItem> {
    const profiles = await readRolebenchProfiles(input, options.root);
    for (const file of await jsonlFiles(input, isBaseline)) {
      const source = path.relative(options.root, file) || path.basename(file);
      for await (const item of readJsonLines(file)) {
        if ('error' in item) {
          yield { kind: 'skip', skip: { source, line: item.line, reason: item.error } };
          continue;
        }
        const record = rolebenchRecord(item.value, source, item.line, profiles);
        if (typeof record === 'string') yield { kind: 'skip', skip: { source, line: item.line, reason: record } };
        else yield { kind: 'record', record };
      }
    }
  },
};
