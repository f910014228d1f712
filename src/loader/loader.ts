/**
 * `createLoader`: streams a shard dataset (local folder or http(s) index) as batches of
 * dialogues with their video features, in a deterministic order, with bounded prefetch done by
 * worker threads, exact resume and equal parts per rank. README.md beside this file specifies
 * the order, resume and rank semantics.
 */
import path from 'node:path';
import { RpvError } from '../util/errors.js';
import type { FeatureSchema, ShardFileFormat } from '../shard/schema.js';
import { epochOrder, planRank, type EpochOrder, type RankPlan } from './order.js';
import { collate as defaultCollate, type Batch, type CollateContext, type Sample } from './collate.js';
import { LoadPool } from './pool.js';
import { openDataset, estimateBlockBytes, type Dataset } from './dataset.js';
import { residentOf, sampleOf, type Resident } from './resident.js';
import type { LoadTask } from './task.js';
import { DEFAULT_CACHE_LIMIT_BYTES, defaultCacheDir, defaultCacheLimitBytes } from '../shard/cache.js';
import type { RetryOptions } from '../shard/fetch.js';
import { blockHashesOf } from '../shard/verify.js';
import {
  LOADER_STATE_FORMAT,
  LOADER_STATE_VERSION,
  ORDER_KEYS,
  validateLoaderState,
  type LoaderState,
} from './state.js';

export interface LoaderOptions<B = Batch> {
  /** A shard folder, its index.json, or an `http(s)://…/index.json` URL. */
  source: string;
  /** Samples per batch; every batch has exactly this many. */
  batchSize: number;
  /** Order seed (default 0). */
  seed?: number;
  /** Permute shards and shuffle samples within windows (default true). */
  shuffle?: boolean;
  /** First epoch to iterate (default 0, or the resume state's). */
  epoch?: number;
  /** This process's rank (default $RANK or 0). */
  rank?: number;
  /** Number of ranks (default $WORLD_SIZE or 1). */
  worldSize?: number;
  /** Worker threads reading and decoding shards (default 2; 0 decodes on the calling thread). */
  workers?: number;
  /**
   * Bound on the bytes the loader holds: decoded blocks, and blocks being read (default 512 MiB).
   * Blocks are read ahead in order of need while the total stays within it. The blocks one batch
   * needs at once (the shuffle window it lies in, two at a window's edge) are always read, so the
   * effective bound is max(prefetchBytes, what one batch needs); `stats().boundBytes` says which,
   * and a warning is emitted when a batch needs more than prefetchBytes (blocks too large: shards
   * written before blocks existed, or a large windowShards).
   */
  prefetchBytes?: number;
  /** Drop the epoch's tail that does not fill a batch on every rank, instead of padding (default false). */
  dropLast?: boolean;
  /** A value from `loader.state()`: continue exactly where that run stopped. */
  resume?: LoaderState;
  /**
   * Shards read together (default 4): each shuffle window mixes one block of each, so a window
   * holds windowShards blocks, whatever the shard size.
   */
  windowShards?: number;
  /** Shard format to read when the index lists both (default arrow when present). */
  format?: ShardFileFormat;
  /** Remote shards: cache folder (default $RPV_CACHE_DIR or ~/.cache/rpv/shards). */
  cacheDir?: string;
  /** Remote shards: cache size limit, least recently used evicted (default $RPV_CACHE_LIMIT_BYTES, else 16 GiB). */
  cacheLimitBytes?: number;
  /** Remote shards: download retries and backoff. */
  retry?: RetryOptions;
  /**
   * Check every shard's bytes as they are read against the index's sha256 hashes: by block for
   * shards whose entry lists block hashes, else whole (downloads are always checked). Default
   * true; a mismatch stops the loader naming the shard and the block's byte range. The cost is
   * measured by bench/loader.ts (README.md beside this file).
   */
  verify?: boolean;
  /** Batch builder; default `collate`. Frames views in samples are valid only during the call. */
  collate?: (samples: Sample[], ctx: CollateContext) => B;
}

/** What the loader knows about its dataset once opened. */
export interface LoaderInfo {
  source: string;
  format: ShardFileFormat;
  schema: FeatureSchema;
  shards: number;
  /** Samples (dialogues) in one epoch before padding. */
  samples: number;
  /** Batches this rank yields per epoch (the same on every rank). */
  batchesPerEpoch: number;
  rank: number;
  worldSize: number;
}

export interface LoaderStats {
  /**
   * Bytes held now: decoded blocks, and blocks being read (estimated until they arrive: their
   * decoded size plus the file bytes the worker holds meanwhile).
   */
  residentBytes: number;
  peakResidentBytes: number;
  /**
   * What residentBytes stays within this epoch: max(prefetchBytes, the most any batch of the epoch
   * needs held at once). 0 before the first epoch starts.
   */
  boundBytes: number;
  /** Shard visits started (a shard read in several blocks counts once). */
  shardsLoaded: number;
  /** Blocks read and decoded. */
  blocksLoaded: number;
  /** Remote shards fetched over the network (cache misses). */
  shardsDownloaded: number;
  /** Total time next() waited for shards. */
  waitMs: number;
}

export const DEFAULT_PREFETCH_BYTES = 512 * 1024 * 1024;
export { DEFAULT_CACHE_LIMIT_BYTES };

interface Load {
  shard: number;
  block: number;
  /** First and last positions (padded epoch order) that need it. */
  first: number;
  last: number;
  bytes: number;
  started: boolean;
  /** Dropped (consumed or loader stopped); a late result is discarded. */
  released?: boolean;
  done?: Promise<void>;
  data?: Resident;
  error?: Error;
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new RpvError(`loader: $${name} must be a non-negative integer, found ${JSON.stringify(raw)}`);
  return n;
}

/** A loader over `options.source`; nothing is read until the first batch is asked for. */
export function createLoader<B = Batch>(options: LoaderOptions<B>): Loader<B> {
  return new Loader<B>(options);
}

export class Loader<B = Batch> implements AsyncIterable<B> {
  readonly seed: number;
  readonly shuffle: boolean;
  readonly batchSize: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly dropLast: boolean;
  readonly windowShards: number;
  readonly workers: number;
  readonly prefetchBytes: number;
  private epochValue: number;
  private batchesDone: number;
  private readonly options: LoaderOptions<B>;
  private readonly resumeState: LoaderState | undefined;
  private dataset: Promise<Dataset> | undefined;
  private plan: RankPlan | undefined;
  private iterating = false;
  /** Worker threads, kept between epochs; closed on break, error or close(). */
  private pool: LoadPool | undefined;
  private readonly statsValue: LoaderStats = { residentBytes: 0, peakResidentBytes: 0, boundBytes: 0, shardsLoaded: 0, blocksLoaded: 0, shardsDownloaded: 0, waitMs: 0 };
  private warnedBound = false;

  constructor(options: LoaderOptions<B>) {
    this.options = options;
    const resume = options.resume === undefined ? undefined : validateLoaderState(options.resume);
    this.resumeState = resume;
    if (typeof options.source !== 'string' || options.source === '') throw new RpvError('loader: source: expected a shard folder or index URL');
    const pick = <K extends (typeof ORDER_KEYS)[number]>(key: K, fallback: LoaderState[K]): LoaderState[K] => {
      const given = (options as unknown as Record<string, unknown>)[key] as LoaderState[K] | undefined;
      if (resume && given !== undefined && given !== resume[key]) {
        throw new RpvError(`loader: resume state has ${key}=${JSON.stringify(resume[key])} but the options say ${JSON.stringify(given)}; the order would differ`);
      }
      return given ?? (resume ? resume[key] : fallback);
    };
    this.seed = pick('seed', 0);
    this.shuffle = pick('shuffle', true);
    this.windowShards = pick('windowShards', 4);
    this.batchSize = pick('batchSize', options.batchSize);
    this.worldSize = pick('worldSize', envInt('WORLD_SIZE', 1));
    this.rank = pick('rank', envInt('RANK', 0));
    this.dropLast = pick('dropLast', false);
    if (!Number.isInteger(this.seed)) throw new RpvError(`loader: seed must be an integer, found ${this.seed}`);
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new RpvError(`loader: batchSize must be a positive integer, found ${this.batchSize}`);
    if (!Number.isInteger(this.worldSize) || this.worldSize < 1) throw new RpvError(`loader: worldSize must be a positive integer, found ${this.worldSize}`);
    if (!Number.isInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize) {
      throw new RpvError(`loader: rank must be an integer in [0, ${this.worldSize}), found ${this.rank}`);
    }
    if (!Number.isInteger(this.windowShards) || this.windowShards < 1) throw new RpvError(`loader: windowShards must be a positive integer, found ${this.windowShards}`);
    this.workers = options.workers ?? 2;
    if (!Number.isInteger(this.workers) || this.workers < 0) throw new RpvError(`loader: workers must be an integer >= 0, found ${this.workers}`);
    this.prefetchBytes = options.prefetchBytes ?? DEFAULT_PREFETCH_BYTES;
    if (!(this.prefetchBytes >= 0)) throw new RpvError(`loader: prefetchBytes must be >= 0, found ${this.prefetchBytes}`);
    this.epochValue = resume ? resume.epoch : (options.epoch ?? 0);
    if (resume && options.epoch !== undefined && options.epoch !== resume.epoch) {
      throw new RpvError(`loader: resume state is at epoch ${resume.epoch} but the options say epoch ${options.epoch}`);
    }
    this.batchesDone = resume ? resume.batches : 0;
  }

  /** Epoch the next batch belongs to. */
  get epoch(): number {
    return this.epochValue;
  }

  /** Memory and I/O counters. */
  stats(): LoaderStats {
    return { ...this.statsValue };
  }

  /**
   * Where this loader stands: after `createLoader({ ...same options, resume: state })` the new
   * loader yields exactly the batches this one would have yielded next.
   */
  state(): LoaderState {
    let epoch = this.epochValue;
    let batches = this.batchesDone;
    if (this.plan && batches >= this.plan.batches) {
      epoch += 1;
      batches = 0;
    }
    return {
      format: LOADER_STATE_FORMAT,
      version: LOADER_STATE_VERSION,
      dataset: this.fingerprint ?? this.resumeState?.dataset ?? '',
      seed: this.seed,
      shuffle: this.shuffle,
      windowShards: this.windowShards,
      batchSize: this.batchSize,
      rank: this.rank,
      worldSize: this.worldSize,
      dropLast: this.dropLast,
      epoch,
      batches,
    };
  }

  private fingerprint: string | undefined;

  /** Read the index (once) and describe the dataset. */
  async describe(): Promise<LoaderInfo> {
    const ds = await this.open();
    const plan = this.planFor(ds);
    return {
      source: this.options.source,
      format: ds.format,
      schema: { featureDim: ds.index.schema.featureDim, tokensPerFrame: ds.index.schema.tokensPerFrame, dtype: ds.index.schema.dtype },
      shards: ds.shards.length,
      samples: plan.total,
      batchesPerEpoch: plan.batches,
      rank: this.rank,
      worldSize: this.worldSize,
    };
  }

  /** The order of one epoch of this dataset (the positions every rank splits). */
  async epochOrder(epoch = this.epochValue): Promise<EpochOrder> {
    const ds = await this.open();
    return epochOrder({ seed: this.seed, epoch, shardSizes: ds.sizes, blockSizes: blockSizesOf(ds), windowShards: this.windowShards, shuffle: this.shuffle });
  }

  private open(): Promise<Dataset> {
    this.dataset ??= openDataset(this.options).then((ds) => {
      this.fingerprint = ds.fingerprint;
      // A state taken before the dataset was opened has no fingerprint ('') and nothing to check.
      if (this.resumeState && this.resumeState.dataset !== '' && this.resumeState.dataset !== ds.fingerprint) {
        throw new RpvError(
          `loader: resume state was saved on another dataset (fingerprint ${this.resumeState.dataset}, ${this.options.source} has ${ds.fingerprint})`,
        );
      }
      return ds;
    });
    // A failed open (e.g. the index server was down) is tried again on the next iteration.
    this.dataset.catch(() => {
      this.dataset = undefined;
    });
    return this.dataset;
  }

  private planFor(ds: Dataset): RankPlan {
    let total = 0;
    for (const n of ds.sizes) total += n;
    this.plan = planRank({ total, batchSize: this.batchSize, worldSize: this.worldSize, rank: this.rank, dropLast: this.dropLast });
    return this.plan;
  }

  /** Iterates the rest of the current epoch; iterate again for the next epoch. */
  [Symbol.asyncIterator](): AsyncIterator<B> {
    return this.iterateEpoch();
  }

  private async *iterateEpoch(): AsyncGenerator<B, void, undefined> {
    if (this.iterating) throw new RpvError('loader: already being iterated; finish or break the other loop first');
    this.iterating = true;
    let completed = false;
    const loads: Load[] = [];
    try {
      const ds = await this.open();
      const plan = this.planFor(ds);
      if (plan.total === 0) throw new RpvError(`loader: ${this.options.source}: the dataset has no dialogues`);
      if (this.batchesDone >= plan.batches) {
        this.epochValue += 1;
        this.batchesDone = 0;
      }
      const epoch = this.epochValue;
      const order = epochOrder({ seed: this.seed, epoch, shardSizes: ds.sizes, blockSizes: blockSizesOf(ds), windowShards: this.windowShards, shuffle: this.shuffle });
      const nShards = ds.sizes.length;
      let pos = plan.start + this.batchesDone * this.batchSize;
      const visits = blockVisits(ds, plan, order, pos);
      for (const load of visits.loads) loads.push(load);
      const slot = visits.slot;
      const stats = this.statsValue;
      this.noteBound(loads, pos, plan.end);
      const visited = new Set<number>();
      this.pool ??= new LoadPool(this.workers);
      const activePool = this.pool;
      let nextLoad = 0;
      let failure: Error | undefined;
      const start = (load: Load): void => {
        load.started = true;
        stats.residentBytes += load.bytes;
        stats.peakResidentBytes = Math.max(stats.peakResidentBytes, stats.residentBytes);
        const fail = (err: unknown): void => {
          const message = err instanceof Error ? err.message : String(err);
          load.error = new RpvError(`loader: shard ${ds.shards[load.shard]!.file}: ${message}`, { cause: err });
          failure ??= load.error;
        };
        // Settles in every case (never rejects): errors are kept and thrown from next().
        load.done = activePool.run(this.taskFor(ds, load.shard, load.block)).then((result) => {
          try {
            const blocks = ds.blocks[load.shard]!;
            const resident = residentOf(result.shard, { rows: blocks.rows[load.block]!, dialogues: blocks.dialogues[load.block]! }, blocks.count > 1 ? load.block : undefined);
            if (load.released) return;
            stats.residentBytes += result.shard.decodedBytes - load.bytes;
            stats.peakResidentBytes = Math.max(stats.peakResidentBytes, stats.residentBytes);
            load.bytes = result.shard.decodedBytes;
            load.data = resident;
            stats.blocksLoaded += 1;
            const visit = visitOf(load.first, plan.total) * nShards + load.shard;
            if (!visited.has(visit)) {
              visited.add(visit);
              stats.shardsLoaded += 1;
            }
            if (result.downloaded) stats.shardsDownloaded += 1;
          } catch (err) {
            fail(err);
          }
        }, fail);
      };
      const release = (load: Load): void => {
        if (!load.started || load.released) return;
        stats.residentBytes -= load.bytes;
        load.bytes = 0;
        load.data = undefined;
        load.released = true;
      };

      const ctxBase = { tokensPerFrame: ds.index.schema.tokensPerFrame, featureDim: ds.index.schema.featureDim, epoch };
      const collate = this.options.collate ?? (defaultCollate as unknown as (s: Sample[], c: CollateContext) => B);
      /** Start what the batch ending at `end` needs, then read ahead while the budget allows. */
      const pump = (end: number): void => {
        while (nextLoad < loads.length) {
          const load = loads[nextLoad]!;
          const required = load.first < end;
          if (!required && stats.residentBytes + load.bytes > this.prefetchBytes) break;
          start(load);
          nextLoad++;
        }
      };
      let firstHeld = 0;
      while (this.batchesDone < plan.batches) {
        const end = pos + this.batchSize;
        pump(end);
        const samples: Sample[] = new Array(this.batchSize);
        for (let p = pos; p < end; p++) {
          if (failure) throw failure;
          const load = slot(p);
          if (!load.data && !load.error) {
            const waitStart = performance.now();
            await load.done;
            stats.waitMs += performance.now() - waitStart;
          }
          if (failure) throw failure;
          if (load.error) throw load.error;
          const src = sourceOf(p, plan.total);
          const first = ds.blocks[load.shard]!.firstDialogue[load.block]!;
          samples[p - pos] = sampleOf(load.data!, order.local[src]! - first, p >= plan.total, ds.floatsPerFrame);
        }
        const batch = collate(samples, { ...ctxBase, batchIndex: this.batchesDone });
        // Drop shards whose last sample is behind us, and refill the read-ahead before yielding,
        // so workers keep reading while the consumer works on this batch.
        for (let i = firstHeld; i < nextLoad; i++) if (loads[i]!.last < end) release(loads[i]!);
        while (firstHeld < nextLoad && loads[firstHeld]!.released) firstHeld++;
        pump(end + this.batchSize);
        pos = end;
        this.batchesDone += 1;
        yield batch;
      }
      this.epochValue += 1;
      this.batchesDone = 0;
      completed = true;
    } finally {
      this.iterating = false;
      for (const load of loads) {
        if (load.started) this.statsValue.residentBytes -= load.bytes;
        load.bytes = 0;
        load.data = undefined;
        load.released = true;
      }
      // Workers stay (idle, unref'd) for the next epoch after a full pass; anything else stops them.
      if (!completed) await this.close();
    }
  }

  /**
   * The bound: read-ahead stays within prefetchBytes; the blocks one batch needs are read whatever
   * the budget, so the most any batch needs held at once may raise it (`stats().boundBytes`; a
   * warning, once, when it does).
   */
  private noteBound(loads: Load[], pos: number, end: number): void {
    const needed = neededPerBatch(loads, pos, this.batchSize, end);
    this.statsValue.boundBytes = Math.max(this.prefetchBytes, needed.bytes);
    if (needed.bytes > this.prefetchBytes && !this.warnedBound) {
      this.warnedBound = true;
      const mib = (n: number) => (n >= 2 ** 20 ? `${Math.round(n / 2 ** 20)} MiB` : n >= 1024 ? `${Math.round(n / 1024)} KiB` : `${n} bytes`);
      process.emitWarning(
        `loader: ${this.options.source}: one batch needs ${mib(needed.bytes)} held at once (${needed.loads} blocks of windowShards=${this.windowShards} shards), above prefetchBytes ${mib(this.prefetchBytes)}; ` +
          'memory will reach that. Blocks this large come from shards written without blocks (convert them again); or lower windowShards, or raise prefetchBytes.',
        { code: 'RPV_LOADER_BOUND' },
      );
    }
  }

  /** Stop the worker threads now (they are also stopped by break, return() and errors). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  private taskFor(ds: Dataset, shard: number, block: number): LoadTask {
    const entry = ds.shards[shard]!;
    const count = ds.blocks[shard]!.count;
    const hashes = blockHashesOf(entry);
    const task: LoadTask = {
      name: entry.file,
      format: entry.format,
      floatsPerFrame: ds.floatsPerFrame,
      bytes: entry.bytes,
      sha256: entry.sha256,
      verify: this.options.verify ?? true,
      ...(hashes ? { blockHashes: hashes } : {}),
      ...(count > 1 ? { block: { index: block, count } } : {}),
    };
    if (ds.remote) {
      task.remote = {
        url: new URL(entry.file, ds.base).href,
        cacheDir: this.options.cacheDir ?? defaultCacheDir(),
        limitBytes: this.options.cacheLimitBytes ?? defaultCacheLimitBytes(),
        retry: this.options.retry ?? {},
      };
    } else {
      task.file = path.join(ds.base, entry.file);
    }
    return task;
  }
}

/**
 * Every block visit still ahead of this rank from position `pos`, in the order first needed (with
 * the first and last position that reads it), and the visit a position reads.
 */
function blockVisits(ds: Dataset, plan: { total: number; end: number }, order: EpochOrder, pos: number): { loads: Load[]; slot: (p: number) => Load } {
  // Global number of each shard's first block.
  const blockBase: number[] = [0];
  for (const b of ds.blocks) blockBase.push(blockBase[blockBase.length - 1]! + b.count);
  const nBlocks = blockBase[ds.sizes.length]!;
  const byKey = new Map<number, Load>();
  const loads: Load[] = [];
  const keyOf = (p: number): number => {
    const src = sourceOf(p, plan.total);
    return visitOf(p, plan.total) * nBlocks + blockBase[order.shard[src]!]! + order.block[src]!;
  };
  for (let p = pos; p < plan.end; p++) {
    const src = sourceOf(p, plan.total);
    const key = keyOf(p);
    const load = byKey.get(key);
    if (load) load.last = p;
    else {
      const s = order.shard[src]!;
      const b = order.block[src]!;
      const fresh: Load = { shard: s, block: b, first: p, last: p, bytes: estimateBlockBytes(ds, s, b), started: false };
      byKey.set(key, fresh);
      loads.push(fresh);
    }
  }
  return { loads, slot: (p) => byKey.get(keyOf(p))! };
}

/** Block sizes for epochOrder: a shard of one block needs none. */
function blockSizesOf(ds: Dataset): (number[] | undefined)[] {
  return ds.blocks.map((b) => (b.count > 1 ? b.dialogues : undefined));
}

/**
 * The most bytes any batch of [pos, end) needs held at once: the loads whose positions overlap it
 * (a load is held from its first batch to its last). `loads` are in the order first needed.
 */
function neededPerBatch(loads: readonly Load[], pos: number, batchSize: number, end: number): { bytes: number; loads: number } {
  const batches = Math.max(0, Math.ceil((end - pos) / batchSize));
  const bytes = new Float64Array(batches + 1);
  const count = new Int32Array(batches + 1);
  for (const load of loads) {
    const a = Math.floor((load.first - pos) / batchSize);
    const b = Math.floor((load.last - pos) / batchSize) + 1;
    bytes[a] += load.bytes;
    bytes[b] -= load.bytes;
    count[a] += 1;
    count[b] -= 1;
  }
  let best = { bytes: 0, loads: 0 };
  let sum = 0;
  let n = 0;
  for (let k = 0; k < batches; k++) {
    sum += bytes[k]!;
    n += count[k]!;
    if (sum > best.bytes) best = { bytes: sum, loads: n };
  }
  return best;
}

/**
 * Sample position behind padded position `p`: the order itself below `total`, then the order
 * backwards from its end (those shards are still resident: they were just consumed).
 */
export function sourceOf(p: number, total: number): number {
  return p < total ? p : total - 1 - ((p - total) % total);
}

/** Visit number of a shard needed at `p`: padding reuses the epoch's own visit (0). */
function visitOf(p: number, total: number): number {
  return p < 2 * total ? 0 : Math.floor(p / total);
}

