/**
 * A decoded shard (or one block of it) held by the loader, and the samples (one per dialogue) read
 * out of it.
 */
import type { ShardEntry } from '../shard/schema.js';
import type { Sample } from './collate.js';
import { stringAt, type DecodedShard } from './decode.js';

export interface Resident {
  decoded: DecodedShard;
  /** Row of each sample (dialogue) of the shard. */
  rowOf: Int32Array;
}

/**
 * Check a decoded shard, or block `block` of one, against what the index says it holds (`expected`).
 */
export function residentOf(decoded: DecodedShard, expected: Pick<ShardEntry, 'rows' | 'dialogues'>, block?: number): Resident {
  const dialogues = decoded.dialogueStart[decoded.rows]!;
  if (decoded.rows !== expected.rows || dialogues !== expected.dialogues) {
    const what = block === undefined ? '' : `block ${block + 1} `;
    throw new Error(`${what}holds ${decoded.rows} rows and ${dialogues} dialogues, the index says ${expected.rows} rows and ${expected.dialogues} dialogues`);
  }
  const rowOf = new Int32Array(dialogues);
  for (let r = 0; r < decoded.rows; r++) rowOf.fill(r, decoded.dialogueStart[r]!, decoded.dialogueStart[r + 1]!);
  return { decoded, rowOf };
}

export function sampleOf(res: Resident, d: number, padding: boolean, floatsPerFrame: number): Sample {
  const s = res.decoded;
  const r = res.rowOf[d]!;
  const videoId = stringAt(s.videoId, r)!;
  const dialogueId = stringAt(s.dialogueId, d)!;
  const turns = [];
  for (let t = s.turnStart[d]!; t < s.turnStart[d + 1]!; t++) turns.push({ speaker: stringAt(s.speaker, t)!, text: stringAt(s.text, t)! });
  const f0 = s.frameStart[r]!;
  const f1 = s.frameStart[r + 1]!;
  return {
    sampleId: `${videoId}/${dialogueId}`,
    padding,
    video_id: videoId,
    dialogue_id: dialogueId,
    role: stringAt(s.role, r)!,
    profile: stringAt(s.profile, r),
    summary: stringAt(s.summary, r),
    language: stringAt(s.language, r),
    platform: stringAt(s.platform, r),
    turns,
    numFrames: f1 - f0,
    frames: s.frames.subarray(f0 * floatsPerFrame, f1 * floatsPerFrame),
    frameTimes: s.frameTimes.subarray(f0, f1),
  };
}
