import { promises as fs, realpathSync } from 'node:fs';
import path from 'node:path';
import { detectInputFormat } from '../convert/formats/index.js';
import { mediaPathProblem, normaliseMediaPath, symlinkProblem } from '../convert/media-path.js';
import { readShardIndex, shardsOfFormat } from '../shard/index-file.js';
import { readShard } from '../shard/read.js';
import type { VideoRow } from '../shard/schema.js';
import { RpvError, errorMessage } from '../util/errors.js';
import type { RateItem } from './items.js';
import { RateRequestError } from './session.js';

/**
 * What the page shows of an item's video. In order:
 * 1. the item's `video` (or MMRole's `image`), a path relative to `--media-root` (the export);
 * 2. the export's own video for the item's `video_id`, looked up in the export's annotations
 *    (any input format `rpv convert` reads), when `--media-root` is an export;
 * 3. the sampled frames of the `video_id` row in `--shards`: for rpv's `grid` encoder, each frame's
 *    cell colours (a coarse picture of the frame); other encoders' features are not pictures.
 * Media paths pass the checks `rpv convert` applies (`src/convert/media-path.ts`): relative,
 * nothing outside the media root, no symlink out of it (checked again at every request).
 */

export interface MediaOptions {
  /** The export folder media paths are relative to. */
  mediaRoot?: string | null;
  /** A shard folder (with index.json) to show frames from when there is no video. */
  shards?: string | null;
}

export type MediaKind = 'video' | 'image' | 'frames' | 'none';

export interface MediaInfo {
  kind: MediaKind;
  /** Why there is nothing to show (a refused path, a missing video id), when kind is `none`. */
  problem?: string;
}

export interface FramesView {
  videoId: string;
  /** Seconds of each sampled frame. */
  times: number[];
  /** Cells per side of each frame's colour grid; 0 when the features are not colours. */
  cells: number;
  /** Per frame, cells x cells RGB bytes (row-major), when cells > 0. */
  frames: number[][];
  encoder: string;
  note?: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.mp4': 'video/mp4',
  '.m4v': 'video/mp4',
  '.mov': 'video/quicktime',
  '.webm': 'video/webm',
  '.mkv': 'video/x-matroska',
  '.ogv': 'video/ogg',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
};

type Resolved = { kind: 'video' | 'image'; rel: string } | { kind: 'frames'; videoId: string } | { kind: 'none'; problem: string | null };

export class MediaResolver {
  private readonly root: string | null;
  private readonly realRoot: string | null;
  private readonly byItem = new Map<string, Resolved>();
  private readonly shardDir: string | null;
  private readonly shardOfVideo = new Map<string, string>();
  private encoder = '';
  private cached: { file: string; rows: VideoRow[] } | null = null;

  private constructor(root: string | null, realRoot: string | null, shardDir: string | null) {
    this.root = root;
    this.realRoot = realRoot;
    this.shardDir = shardDir;
  }

  /** Resolve every item's media once (reading the export's annotations and the shard index if needed). */
  static async create(items: readonly RateItem[], options: MediaOptions = {}): Promise<MediaResolver> {
    const root = options.mediaRoot ? path.resolve(options.mediaRoot) : null;
    let realRoot: string | null = null;
    if (root) {
      try {
        realRoot = await fs.realpath(root);
      } catch (err) {
        throw new RpvError(`rate: --media-root ${options.mediaRoot}: ${errorMessage(err)}`);
      }
    }
    const resolver = new MediaResolver(root, realRoot, options.shards ? path.resolve(options.shards) : null);
    const needsExport = items.filter((i) => i.video === null && i.image === null && i.videoId !== null);
    const exported = root && needsExport.length > 0 ? await exportVideos(root) : new Map<string, string>();
    if (resolver.shardDir && needsExport.some((i) => !exported.has(i.videoId!))) await resolver.indexShards();
    for (const item of items) resolver.byItem.set(item.id, resolver.resolve(item, exported));
    return resolver;
  }

  private resolve(item: RateItem, exported: Map<string, string>): Resolved {
    const file = item.video ?? item.image ?? (item.videoId !== null ? (exported.get(item.videoId) ?? null) : null);
    if (file !== null) {
      const kind = item.video === null && item.image !== null ? 'image' : 'video';
      if (!this.root) return { kind: 'none', problem: `${kind} ${file}: no --media-root given` };
      const problem = mediaPathProblem(file);
      if (problem) return { kind: 'none', problem };
      return { kind, rel: normaliseMediaPath(file) };
    }
    if (item.videoId !== null && this.shardOfVideo.has(item.videoId)) return { kind: 'frames', videoId: item.videoId };
    if (item.videoId !== null) {
      const where = [this.root ? 'the export' : null, this.shardDir ? 'the shards' : null].filter(Boolean).join(' or ');
      return { kind: 'none', problem: where ? `video_id '${item.videoId}' is not in ${where}` : null };
    }
    return { kind: 'none', problem: null };
  }

  private async indexShards(): Promise<void> {
    const index = await readShardIndex(this.shardDir!);
    this.encoder = index.encoder.id;
    const arrow = shardsOfFormat(index, 'arrow');
    for (const shard of arrow.length > 0 ? arrow : shardsOfFormat(index, 'parquet')) {
      const file = path.join(this.shardDir!, shard.file);
      for (const row of await readShard(file, shard.format, { columns: ['video_id'] })) this.shardOfVideo.set(row.video_id, file);
    }
  }

  /** What the page may show for an item (no file paths). */
  info(item: RateItem): MediaInfo {
    const r = this.byItem.get(item.id) ?? { kind: 'none', problem: null };
    return r.kind === 'none' ? { kind: 'none', ...(r.problem ? { problem: r.problem } : {}) } : { kind: r.kind };
  }

  /** The item's video or image file, checked again now: 403 when it leads out of the root, 404 when missing. */
  async file(item: RateItem): Promise<{ file: string; size: number; contentType: string }> {
    const r = this.byItem.get(item.id);
    if (!r || (r.kind !== 'video' && r.kind !== 'image')) throw new RateRequestError(404, `item '${item.id}' has no ${r?.kind === 'frames' ? 'video file (frames only)' : 'video'}${r?.kind === 'none' && r.problem ? `: ${r.problem}` : ''}`);
    const file = path.join(this.root!, r.rel);
    let real: string | null = null;
    try {
      real = realpathSync(file);
    } catch {
      real = null;
    }
    const escape = symlinkProblem(this.realRoot!, r.rel, real);
    if (escape) throw new RateRequestError(403, escape);
    const stat = real === null ? null : await fs.stat(real).catch(() => null);
    if (!stat || !stat.isFile()) throw new RateRequestError(404, `${r.kind} ${r.rel} not found under the media root`);
    return { file: real!, size: stat.size, contentType: CONTENT_TYPES[path.extname(r.rel).toLowerCase()] ?? 'application/octet-stream' };
  }

  /** The item's sampled frames from the shards. */
  async frames(item: RateItem): Promise<FramesView> {
    const r = this.byItem.get(item.id);
    if (!r || r.kind !== 'frames') throw new RateRequestError(404, `item '${item.id}' has no frames in the shards`);
    const file = this.shardOfVideo.get(r.videoId)!;
    if (this.cached?.file !== file) this.cached = { file, rows: await readShard(file) };
    const row = this.cached.rows.find((x) => x.video_id === r.videoId)!;
    return framesView(row, this.encoder);
  }
}

/** id -> video path of every record of the export at `root` (empty when `root` is no export rpv reads). */
async function exportVideos(root: string): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  let format;
  try {
    format = await detectInputFormat(root);
  } catch {
    return map;
  }
  for await (const parsed of format.read(root, { root })) {
    if (parsed.kind === 'record' && parsed.record.video !== null && !map.has(parsed.record.id)) map.set(parsed.record.id, parsed.record.video);
  }
  return map;
}

/** A shard row's frames as colour grids (grid-v1 features hold each cell's mean colour in [-1, 1]). */
export function framesView(row: VideoRow, encoder: string): FramesView {
  const times = Array.from(row.frame_times);
  const grid = /^grid-v1:cells=(\d+),tokens=(frame|cell)$/.exec(encoder);
  if (!grid || row.num_frames === 0) {
    return { videoId: row.video_id, times, cells: 0, frames: [], encoder, note: `${row.num_frames} frames of ${encoder} features (not pictures)` };
  }
  const cells = Number(grid[1]);
  const perFrame = row.frames.length / row.num_frames;
  const stride = grid[2] === 'frame' ? 7 : 9;
  const byte = (v: number) => Math.max(0, Math.min(255, Math.round(((v + 1) / 2) * 255)));
  const frames: number[][] = [];
  for (let f = 0; f < row.num_frames; f++) {
    const rgb: number[] = [];
    for (let c = 0; c < cells * cells; c++) {
      const at = f * perFrame + c * stride;
      rgb.push(byte(row.frames[at]!), byte(row.frames[at + 1]!), byte(row.frames[at + 2]!));
    }
    frames.push(rgb);
  }
  return { videoId: row.video_id, times, cells, frames, encoder };
}
