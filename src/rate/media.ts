import { promises as fs, realpathSync } from 'node:fs';
import path from 'node:path';
import { detectInputFormat } from '../convert/formats/index.js';
import { mediaPathProblem, normaliseMediaPath, symlinkProblem } from '../convert/media-path.js';
import { readShardIndex, shardsOfFormat } from '../shard/index-file.js';
import type { ShardEntry, VideoRow } from '../shard/schema.js';
import { readShardRows } from '../shard/source.js';
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
 *    Shard bytes are checked against index.json as they are read, at start and at each request
 *    (`readShardRows`, src/shard/source.ts): a damaged shard stops the server at start, naming
 *    the file and block, and later gives the rater a 500 with the details in the server's output.
 *    Also when 1. or 2. names a file that is missing at start (`fallbacks` lists those items, for
 *    the warning `rpv rate serve` prints).
 * Media paths pass the checks `rpv convert` applies (`src/convert/media-path.ts`): relative,
 * nothing outside the media root, no symlink out of it (checked again at every request).
 *
 * What raters are told never holds a path of the server's disk: a refused or missing file is
 * described to them in words, and its path goes to the server's output (`problem`, `log`) only.
 */

export interface MediaOptions {
  /** The export folder media paths are relative to. */
  mediaRoot?: string | null;
  /** A shard folder (with index.json) to show frames from when there is no video. */
  shards?: string | null;
  /** Where refusals with their paths are written (never sent to raters). Default: stderr. */
  log?: (line: string) => void;
}

export type MediaKind = 'video' | 'image' | 'frames' | 'none';

export interface MediaInfo {
  kind: MediaKind;
  /** Why there is nothing to show, in words for the rater (no paths), when kind is `none`. */
  problem?: string;
}

/** An item whose media file is missing, shown with its frames from the shards instead. */
export interface MediaFallback {
  id: string;
  /** The missing file, relative to the media root. */
  file: string;
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

/** `problem`: for the server's output (may name paths); `shown`: for the rater. */
type Resolved = { kind: 'video' | 'image'; rel: string } | { kind: 'frames'; videoId: string } | { kind: 'none'; problem: string | null; shown: string | null };

export class MediaResolver {
  private readonly root: string | null;
  private readonly realRoot: string | null;
  private readonly byItem = new Map<string, Resolved>();
  private readonly shardDir: string | null;
  private readonly shardOfVideo = new Map<string, ShardEntry>();
  private encoder = '';
  private cached: { file: string; rows: VideoRow[] } | null = null;
  private readonly log: (line: string) => void;
  /** Items whose file is missing, shown with their frames from the shards. */
  readonly fallbacks: MediaFallback[] = [];

  private constructor(root: string | null, realRoot: string | null, shardDir: string | null, log: (line: string) => void) {
    this.root = root;
    this.realRoot = realRoot;
    this.shardDir = shardDir;
    this.log = log;
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
    const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    const resolver = new MediaResolver(root, realRoot, options.shards ? path.resolve(options.shards) : null, log);
    const needsExport = items.filter((i) => i.video === null && i.image === null && i.videoId !== null);
    const exported = root && needsExport.length > 0 ? await exportVideos(root) : new Map<string, string>();
    const files = new Map<string, Resolved>();
    const missing = new Set<string>();
    for (const item of items) {
      const r = resolver.resolveFile(item, exported);
      if (!r) continue;
      files.set(item.id, r);
      if ((r.kind === 'video' || r.kind === 'image') && !(await isFile(path.join(root!, r.rel)))) missing.add(item.id);
    }
    const playable = (id: string) => files.get(id)?.kind === 'video' || files.get(id)?.kind === 'image';
    const wantsFrames = items.some((i) => i.videoId !== null && (missing.has(i.id) || !playable(i.id)));
    if (resolver.shardDir && wantsFrames) await resolver.indexShards();
    for (const item of items) resolver.byItem.set(item.id, resolver.resolve(item, files.get(item.id) ?? null, missing.has(item.id)));
    return resolver;
  }

  /** The item's video or image file, as a path under the root, or why it may not be used; null without one. */
  private resolveFile(item: RateItem, exported: Map<string, string>): Resolved | null {
    const file = item.video ?? item.image ?? (item.videoId !== null ? (exported.get(item.videoId) ?? null) : null);
    if (file === null) return null;
    const kind = item.video === null && item.image !== null ? 'image' : 'video';
    if (!this.root) return { kind: 'none', problem: `${kind} ${file}: no --media-root given`, shown: `the server was started without --media-root, so it has no ${kind}s` };
    const problem = mediaPathProblem(file);
    if (problem) return { kind: 'none', problem, shown: `the ${kind}'s path is refused: it leads out of the media root` };
    return { kind, rel: normaliseMediaPath(file) };
  }

  private resolve(item: RateItem, file: Resolved | null, missing: boolean): Resolved {
    const inShards = item.videoId !== null && this.shardOfVideo.has(item.videoId);
    if (file !== null && missing && file.kind !== 'none' && file.kind !== 'frames') {
      if (inShards) {
        this.fallbacks.push({ id: item.id, file: file.rel });
        return { kind: 'frames', videoId: item.videoId! };
      }
      const shards = this.shardDir && item.videoId !== null ? `, and video_id '${item.videoId}' is not in --shards` : this.shardDir ? ' (no video_id to find its frames in --shards)' : '';
      return { kind: 'none', problem: `${file.kind} ${file.rel} not found under the media root${shards}`, shown: `the ${file.kind} file is missing on the server` };
    }
    // Without --media-root there is no file to play: the shards' frames are what there is.
    if (file !== null && !(inShards && !this.root)) return file;
    if (inShards) return { kind: 'frames', videoId: item.videoId! };
    if (item.videoId !== null) {
      const where = [this.root ? 'the export' : null, this.shardDir ? 'the shards' : null].filter(Boolean).join(' or ');
      const problem = where ? `video_id '${item.videoId}' is not in ${where}` : null;
      return { kind: 'none', problem, shown: problem };
    }
    return { kind: 'none', problem: null, shown: null };
  }

  private async indexShards(): Promise<void> {
    const index = await readShardIndex(this.shardDir!);
    this.encoder = index.encoder.id;
    const arrow = shardsOfFormat(index, 'arrow');
    for (const shard of arrow.length > 0 ? arrow : shardsOfFormat(index, 'parquet')) {
      for (const row of await readShardRows(this.shardDir!, shard, { who: 'rate', columns: ['video_id'] })) this.shardOfVideo.set(row.video_id, shard);
    }
  }

  /** What the page may show for an item (no file paths). */
  info(item: RateItem): MediaInfo {
    const r = this.byItem.get(item.id) ?? { kind: 'none', problem: null, shown: null };
    return r.kind === 'none' ? { kind: 'none', ...(r.shown ? { problem: r.shown } : {}) } : { kind: r.kind };
  }

  /** Why the item has nothing to show, for the server's output (paths included); null when it has. */
  problem(item: RateItem): string | null {
    const r = this.byItem.get(item.id);
    return r?.kind === 'none' ? r.problem : null;
  }

  /**
   * The item's video or image file, checked again now: 403 when it leads out of the root, 404 when
   * missing. The rater is told what happened, the server's log where.
   */
  async file(item: RateItem): Promise<{ file: string; size: number; contentType: string }> {
    const r = this.byItem.get(item.id);
    if (!r || (r.kind !== 'video' && r.kind !== 'image')) {
      throw new RateRequestError(404, `item '${item.id}' has no ${r?.kind === 'frames' ? 'video file (frames only)' : 'video'}${r?.kind === 'none' && r.shown ? `: ${r.shown}` : ''}`);
    }
    const file = path.join(this.root!, r.rel);
    let real: string | null = null;
    try {
      real = realpathSync(file);
    } catch {
      real = null;
    }
    const escape = symlinkProblem(this.realRoot!, r.rel, real);
    if (escape) {
      this.log(`rate: item ${item.id}: refused: ${escape}`);
      throw new RateRequestError(403, `item '${item.id}': the ${r.kind} is refused: it is a symlink that leads out of the media root (the server's output says where)`);
    }
    const stat = real === null ? null : await fs.stat(real).catch(() => null);
    if (!stat || !stat.isFile()) {
      this.log(`rate: item ${item.id}: ${r.kind} ${r.rel} not found under the media root ${this.root}`);
      throw new RateRequestError(404, `item '${item.id}': the ${r.kind} file is missing on the server`);
    }
    return { file: real!, size: stat.size, contentType: CONTENT_TYPES[path.extname(r.rel).toLowerCase()] ?? 'application/octet-stream' };
  }

  /** The item's sampled frames from the shards. */
  async frames(item: RateItem): Promise<FramesView> {
    const r = this.byItem.get(item.id);
    if (!r || r.kind !== 'frames') throw new RateRequestError(404, `item '${item.id}' has no frames in the shards`);
    const shard = this.shardOfVideo.get(r.videoId)!;
    if (this.cached?.file !== shard.file) this.cached = { file: shard.file, rows: await readShardRows(this.shardDir!, shard, { who: 'rate' }) };
    const row = this.cached.rows.find((x) => x.video_id === r.videoId)!;
    return framesView(row, this.encoder);
  }
}

/** Whether `file` is a regular file (symlinks followed: where one leads is checked when served). */
async function isFile(file: string): Promise<boolean> {
  const stat = await fs.stat(file).catch(() => null);
  return stat !== null && stat.isFile();
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
