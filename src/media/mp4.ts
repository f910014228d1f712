/**
 * `probeMp4`: the facts `probeVideo` needs, read in-process from an ISO BMFF (mp4/mov) file's
 * box headers and sample tables: a few small reads instead of an ffprobe process.
 *
 * It answers only when it is sure to give what ffprobe would (FFmpeg's mov demuxer: stream
 * duration, size, codec, average frame rate, packet count) for a clean, complete, non-fragmented
 * file; anything else (another container, fragments, several video tracks, an edit list it
 * cannot replay exactly, a sample past the end of the file, any inconsistency) returns null, and
 * the caller asks ffprobe, which also words the errors. It never throws on bad bytes and checks
 * every count against the bytes that hold it before allocating. See README.md "Probing".
 */
import fs from 'node:fs';
import { avcFrameSize } from './h264-sps.js';

/** What `probeMp4` reads from a clean mp4/mov: `VideoInfo`'s fields, as ffprobe gives them. */
export interface Mp4Probe {
  /** The video stream's duration as ffprobe prints it (6 decimals), seconds. */
  durationSec: number;
  width: number;
  height: number;
  hasVideo: true;
  hasAudio: boolean;
  /** ffprobe's codec_name: h264, hevc, mpeg4, av1 or vp9. */
  videoCodec: string;
  /** ffprobe's avg_frame_rate: samples per second over the sample table's total duration. */
  fps: number;
  /** Video samples (= the packets ffprobe reads; every one lies inside the file). */
  videoPackets: number;
  /** End (presentation time + duration) of the last video sample, seconds. */
  lastEndSec: number;
  prober: 'mp4';
}

/** Largest `moov` read into memory; a header this big is not a short video's. */
const MAX_MOOV_BYTES = 64 * 1024 * 1024;
/** Top-level boxes walked before giving up (a clean file has a handful). */
const MAX_TOP_BOXES = 1024;
/** Samples per track accepted (about 4.6 days at 25 fps). */
const MAX_SAMPLES = 10_000_000;
/** Edit-list start (seconds) beyond which the truncation check's margin is not obviously safe. */
const MAX_EDIT_START_SEC = 0.5;

/** Thrown inside the parser on anything unexpected; `probeMp4` turns it into null. */
class NotSure extends Error {}

function check(cond: boolean): asserts cond {
  if (!cond) throw new NotSure();
}

/** sample entry fourcc -> ffprobe codec_name (mp4v is checked against its esds below). */
const VIDEO_CODECS: Record<string, string> = {
  avc1: 'h264',
  avc3: 'h264',
  hvc1: 'hevc',
  hev1: 'hevc',
  mp4v: 'mpeg4',
  av01: 'av1',
  vp09: 'vp9',
};

/** Handlers of tracks that FFmpeg exposes as neither audio nor video, with their usual sample entries. */
const OTHER_HANDLERS = new Set(['tmcd', 'text', 'sbtl', 'subt', 'meta', 'hint', 'odsm', 'sdsm']);
const OTHER_ENTRIES = new Set(['tmcd', 'text', 'tx3g', 'mebx', 'c608', 'wvtt', 'stpp', 'mett', 'metx', 'urim', 'rtp ']);

/** Top-level boxes a plain file may hold besides ftyp/moov/mdat. */
const PLAIN_TOP = new Set(['free', 'skip', 'wide', 'uuid', 'pnot', 'junk', 'pdin', 'PICT']);

/**
 * Read the mp4/mov header of `file`; null when the file is not a clean, complete, non-fragmented
 * ISO BMFF file with one video track that this reader can describe exactly as ffprobe would.
 */
export async function probeMp4(file: string): Promise<Mp4Probe | null> {
  // Synchronous reads: a handful of small ones, each far cheaper than a thread-pool round trip.
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const moov = readMoov(fd, size);
    if (!moov) return null;
    return describeMoov(moov, size);
  } catch {
    return null;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Walk the top-level boxes; the `moov` bytes when the layout is plain and complete. */
function readMoov(fd: number, fileSize: number): Buffer | null {
  const head = Buffer.alloc(16);
  let pos = 0;
  let moov: Buffer | null = null;
  let seenMdat = false;
  for (let n = 0; pos < fileSize; n++) {
    if (n >= MAX_TOP_BOXES || fileSize - pos < 8) return null;
    const bytesRead = fs.readSync(fd, head, 0, 16, pos);
    if (bytesRead < 8) return null;
    let boxSize = head.readUInt32BE(0);
    const type = head.toString('latin1', 4, 8);
    let headerSize = 8;
    if (boxSize === 1) {
      if (bytesRead < 16) return null;
      const big = head.readBigUInt64BE(8);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return null;
      boxSize = Number(big);
      headerSize = 16;
    } else if (boxSize === 0) {
      boxSize = fileSize - pos; // runs to the end of the file
    }
    if (boxSize < headerSize || pos + boxSize > fileSize) return null;
    if (n === 0 && type !== 'ftyp' && type !== 'moov' && type !== 'mdat' && !PLAIN_TOP.has(type)) return null;
    if (type === 'moov') {
      if (moov || boxSize > MAX_MOOV_BYTES) return null;
      moov = Buffer.alloc(boxSize - headerSize);
      if (fs.readSync(fd, moov, 0, moov.length, pos + headerSize) !== moov.length) return null;
    } else if (type === 'mdat') {
      seenMdat = true;
    } else if (type !== 'ftyp' && !PLAIN_TOP.has(type)) {
      // moof/mfra/sidx/styp (fragments), meta (HEIF items) or anything unknown: ask ffprobe.
      return null;
    }
    pos += boxSize;
  }
  return moov && seenMdat ? moov : null;
}

interface Box {
  type: string;
  /** Payload start and end in the buffer (after the box header). */
  start: number;
  end: number;
}

/** The child boxes of `buf[start, end)`; each must fit exactly. */
function children(buf: Buffer, start: number, end: number): Box[] {
  const out: Box[] = [];
  let pos = start;
  while (pos < end) {
    check(end - pos >= 8);
    let size = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    let header = 8;
    if (size === 1) {
      check(end - pos >= 16);
      const big = buf.readBigUInt64BE(pos + 8);
      check(big <= BigInt(end - pos));
      size = Number(big);
      header = 16;
    } else if (size === 0) {
      size = end - pos;
    }
    check(size >= header && pos + size <= end);
    out.push({ type, start: pos + header, end: pos + size });
    pos += size;
  }
  return out;
}

/** The one child of type `type`, undefined when absent; two of them is not a plain file. */
function only(boxes: Box[], type: string): Box | undefined {
  const found = boxes.filter((b) => b.type === type);
  check(found.length <= 1);
  return found[0];
}

function need(boxes: Box[], type: string): Box {
  const b = only(boxes, type);
  check(b !== undefined);
  return b;
}

/** A full box's version byte, checked against the versions this reader knows. */
function version(buf: Buffer, box: Box, known: number[]): number {
  check(box.end - box.start >= 4);
  const v = buf.readUInt8(box.start);
  check(known.includes(v));
  return v;
}

/** Entry count of a table box, checked against the bytes that hold the entries. */
function tableCount(buf: Buffer, box: Box, headerBytes: number, entryBytes: number): number {
  check(box.end - box.start >= headerBytes);
  const count = buf.readUInt32BE(box.start + headerBytes - 4);
  check(count * entryBytes === box.end - box.start - headerBytes);
  return count;
}

interface Track {
  handler: string;
  entry: string;
  timescale: number;
  mdhdDuration: number;
  sampleCount: number;
  /** Per-sample sizes and offsets (all samples verified inside the file). */
  sizes: Float64Array;
  offsets: Float64Array;
  stbl: Box;
  stsdEntry: Box;
  /** The track's single edit, null without an edit list. */
  edit: { mediaTime: number; segmentDuration: number } | null;
}

function describeMoov(moov: Buffer, fileSize: number): Mp4Probe | null {
  const top = children(moov, 0, moov.length);
  check(only(top, 'mvex') === undefined); // fragmented
  const mvhd = need(top, 'mvhd');
  const mvhdV = version(moov, mvhd, [0, 1]);
  const movieTimescale = moov.readUInt32BE(mvhd.start + (mvhdV === 1 ? 20 : 12));
  check(movieTimescale > 0);

  const tracks = top.filter((b) => b.type === 'trak').map((t) => readTrack(moov, t, fileSize));
  const video = tracks.filter((t) => t.handler === 'vide');
  check(video.length === 1);
  let hasAudio = false;
  for (const t of tracks) {
    if (t.handler === 'soun' || t.handler === 'm1a ') hasAudio = true;
    else if (t.handler !== 'vide') check(OTHER_HANDLERS.has(t.handler) && (t.sampleCount === 0 || OTHER_ENTRIES.has(t.entry)));
  }
  return describeVideo(moov, video[0]!, movieTimescale, hasAudio);
}

function readTrack(buf: Buffer, trak: Box, fileSize: number): Track {
  const boxes = children(buf, trak.start, trak.end);
  need(boxes, 'tkhd');
  const mdia = children(buf, ...span(need(boxes, 'mdia')));
  const mdhd = need(mdia, 'mdhd');
  const hdlr = need(mdia, 'hdlr');
  const minfBox = need(mdia, 'minf');
  // FFmpeg takes the duration from mdhd, then the smaller stts total: mdhd must come first.
  check(mdia.indexOf(mdhd) < mdia.indexOf(minfBox));
  const mdhdV = version(buf, mdhd, [0, 1]);
  check(mdhd.end - mdhd.start >= (mdhdV === 1 ? 32 : 20));
  const timescale = buf.readUInt32BE(mdhd.start + (mdhdV === 1 ? 20 : 12));
  const mdhdDuration = mdhdV === 1 ? safeU64(buf, mdhd.start + 24) : buf.readUInt32BE(mdhd.start + 16);
  check(timescale > 0 && timescale <= 0x7fffffff);
  check(mdhdV === 1 ? mdhdDuration < Number.MAX_SAFE_INTEGER : mdhdDuration !== 0xffffffff);
  check(hdlr.end - hdlr.start >= 12);
  const handler = buf.toString('latin1', hdlr.start + 8, hdlr.start + 12);

  const minf = children(buf, ...span(minfBox));
  const dinf = only(minf, 'dinf');
  if (dinf) checkSelfContained(buf, dinf);
  const stbl = need(minf, 'stbl');
  const tables = children(buf, ...span(stbl));

  // stsd: exactly one sample entry (several switch descriptions mid-stream).
  const stsd = need(tables, 'stsd');
  version(buf, stsd, [0]);
  check(stsd.end - stsd.start >= 8 && buf.readUInt32BE(stsd.start + 4) === 1);
  const entries = children(buf, stsd.start + 8, stsd.end);
  check(entries.length === 1);
  const stsdEntry = entries[0]!;

  const sampleCount = sampleTable(buf, tables, handler, fileSize);
  let edit: Track['edit'] = null;
  const edts = only(boxes, 'edts');
  if (edts) edit = readEdit(buf, edts);
  return { handler, entry: stsdEntry.type, timescale, mdhdDuration, stbl, stsdEntry, edit, ...sampleCount };
}

function span(b: Box): [number, number] {
  return [b.start, b.end];
}

function safeU64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64BE(at);
  check(v <= BigInt(Number.MAX_SAFE_INTEGER));
  return Number(v);
}

/** Every data reference points into this file (an external reference would be read elsewhere). */
function checkSelfContained(buf: Buffer, dinf: Box): void {
  const dref = only(children(buf, ...span(dinf)), 'dref');
  if (!dref) return;
  version(buf, dref, [0]);
  check(dref.end - dref.start >= 8);
  const count = buf.readUInt32BE(dref.start + 4);
  const refs = children(buf, dref.start + 8, dref.end);
  check(refs.length === count);
  for (const r of refs) {
    check(r.end - r.start >= 4);
    check((buf.readUInt32BE(r.start) & 1) === 1);
  }
}

/** The one edit-list entry, null for no or an empty list; NotSure for lists this reader does not replay. */
function readEdit(buf: Buffer, edts: Box): Track['edit'] {
  const elst = only(children(buf, ...span(edts)), 'elst');
  if (!elst) return null;
  const v = version(buf, elst, [0, 1]);
  const count = tableCount(buf, elst, 8, v === 1 ? 20 : 12);
  if (count === 0) return null;
  check(count === 1);
  const at = elst.start + 8;
  const segmentDuration = v === 1 ? safeU64(buf, at) : buf.readUInt32BE(at);
  const mediaTime = v === 1 ? Number(buf.readBigInt64BE(at + 8)) : buf.readInt32BE(at + 4);
  const rate = buf.readUInt32BE(at + (v === 1 ? 16 : 8));
  check(rate === 0x10000 && mediaTime >= 0 && Number.isSafeInteger(mediaTime));
  return { mediaTime, segmentDuration };
}

/**
 * Sample sizes and file offsets from stsz/stz2, stsc and stco/co64, each checked: counts agree,
 * chunks are described once, and every sample's bytes lie inside the file.
 */
function sampleTable(buf: Buffer, tables: Box[], handler: string, fileSize: number): { sampleCount: number; sizes: Float64Array; offsets: Float64Array } {
  check(only(tables, 'stsz') === undefined || only(tables, 'stz2') === undefined);
  const stsz = only(tables, 'stsz');
  const stz2 = only(tables, 'stz2');
  let sizes: Float64Array;
  if (stsz) {
    version(buf, stsz, [0]);
    check(stsz.end - stsz.start >= 12);
    const constant = buf.readUInt32BE(stsz.start + 4);
    const count = buf.readUInt32BE(stsz.start + 8);
    check(count <= MAX_SAMPLES);
    if (constant !== 0) {
      // Constant sizes in an audio track mean QuickTime PCM, whose real sizes come from stsd.
      check(handler !== 'soun' && handler !== 'm1a ' && stsz.end - stsz.start === 12);
      // The count is not bounded by the box: bound it by the file before allocating.
      check(constant * count <= fileSize);
      sizes = new Float64Array(count).fill(constant);
    } else {
      check(count * 4 === stsz.end - stsz.start - 12);
      sizes = new Float64Array(count);
      for (let i = 0; i < count; i++) sizes[i] = buf.readUInt32BE(stsz.start + 12 + 4 * i);
    }
  } else if (stz2) {
    version(buf, stz2, [0]);
    check(stz2.end - stz2.start >= 12);
    const field = buf.readUInt8(stz2.start + 7);
    const count = buf.readUInt32BE(stz2.start + 8);
    check((field === 4 || field === 8 || field === 16) && count <= MAX_SAMPLES);
    check(Math.ceil((count * field) / 8) === stz2.end - stz2.start - 12);
    sizes = new Float64Array(count);
    const at = stz2.start + 12;
    for (let i = 0; i < count; i++) {
      if (field === 16) sizes[i] = buf.readUInt16BE(at + 2 * i);
      else if (field === 8) sizes[i] = buf.readUInt8(at + i);
      else sizes[i] = (buf.readUInt8(at + (i >> 1)) >> (i & 1 ? 0 : 4)) & 15;
    }
  } else {
    throw new NotSure();
  }
  const sampleCount = sizes.length;

  const stco = only(tables, 'stco');
  const co64 = only(tables, 'co64');
  check((stco === undefined) !== (co64 === undefined));
  const chunkBox = (stco ?? co64)!;
  version(buf, chunkBox, [0]);
  const chunkCount = tableCount(buf, chunkBox, 8, co64 ? 8 : 4);
  const chunkOffset = (i: number) => (co64 ? safeU64(buf, chunkBox.start + 8 + 8 * i) : buf.readUInt32BE(chunkBox.start + 8 + 4 * i));

  const stsc = need(tables, 'stsc');
  version(buf, stsc, [0]);
  const runs = tableCount(buf, stsc, 8, 12);
  check(runs > 0 || sampleCount === 0);
  const offsets = new Float64Array(sampleCount);
  let sample = 0;
  for (let r = 0; r < runs; r++) {
    const at = stsc.start + 8 + 12 * r;
    const first = buf.readUInt32BE(at);
    const perChunk = buf.readUInt32BE(at + 4);
    const id = buf.readUInt32BE(at + 8);
    const nextFirst = r + 1 < runs ? buf.readUInt32BE(at + 12) : chunkCount + 1;
    check(id === 1 && perChunk >= 1 && first >= 1 && (r > 0 || first === 1) && nextFirst > first && nextFirst <= chunkCount + 1);
    for (let c = first - 1; c < nextFirst - 1; c++) {
      let pos = chunkOffset(c);
      check(sample + perChunk <= sampleCount);
      for (let k = 0; k < perChunk; k++, sample++) {
        offsets[sample] = pos;
        pos += sizes[sample]!;
      }
      check(pos <= fileSize);
    }
  }
  check(sample === sampleCount);
  return { sampleCount, sizes, offsets };
}

/** Decoding durations from stts, one per sample. */
function readStts(buf: Buffer, tables: Box[], sampleCount: number): { durations: Float64Array; total: number } {
  const stts = need(tables, 'stts');
  version(buf, stts, [0]);
  const runs = tableCount(buf, stts, 8, 8);
  const durations = new Float64Array(sampleCount);
  let n = 0;
  let total = 0;
  for (let r = 0; r < runs; r++) {
    const count = buf.readUInt32BE(stts.start + 8 + 8 * r);
    const delta = buf.readUInt32BE(stts.start + 12 + 8 * r);
    // FFmpeg clips deltas it takes for negative corrections; stay well below that.
    check(delta < 0x80000000 && count <= sampleCount - n);
    durations.fill(delta, n, n + count);
    n += count;
    total += count * delta;
  }
  check(n === sampleCount && Number.isSafeInteger(total));
  return { durations, total };
}

/** Composition offsets from ctts (all non-negative), or null without a ctts box. */
function readCtts(buf: Buffer, tables: Box[], sampleCount: number): Float64Array | null {
  const ctts = only(tables, 'ctts');
  if (!ctts) return null;
  version(buf, ctts, [0, 1]);
  const runs = tableCount(buf, ctts, 8, 8);
  if (runs === 0) return null;
  const offsets = new Float64Array(sampleCount);
  let n = 0;
  for (let r = 0; r < runs; r++) {
    const count = buf.readUInt32BE(ctts.start + 8 + 8 * r);
    const offset = buf.readInt32BE(ctts.start + 12 + 8 * r);
    // Negative offsets make FFmpeg shift every timestamp (dts_shift): not replayed here.
    check(count >= 1 && count <= sampleCount - n && offset >= 0 && offset < 1 << 28);
    offsets.fill(offset, n, n + count);
    n += count;
  }
  check(n === sampleCount);
  return offsets;
}

/** Sync-sample flags from stss (every sample when absent). */
function readKeyframes(buf: Buffer, tables: Box[], sampleCount: number): Uint8Array {
  // Partial sync samples and random-access groups add keyframes in FFmpeg: not replayed here.
  check(only(tables, 'stps') === undefined);
  for (const b of tables.filter((t) => t.type === 'sbgp')) {
    check(b.end - b.start >= 8);
    const grouping = buf.toString('latin1', b.start + 4, b.start + 8);
    check(grouping !== 'rap ' && grouping !== 'sync');
  }
  const stss = only(tables, 'stss');
  const key = new Uint8Array(sampleCount);
  if (!stss) return key.fill(1);
  version(buf, stss, [0]);
  const count = tableCount(buf, stss, 8, 4);
  check(count > 0);
  let prev = 0;
  for (let i = 0; i < count; i++) {
    const s = buf.readUInt32BE(stss.start + 8 + 4 * i);
    check(s > prev && s <= sampleCount);
    key[s - 1] = 1;
    prev = s;
  }
  return key;
}

function describeVideo(buf: Buffer, track: Track, movieTimescale: number, hasAudio: boolean): Mp4Probe {
  const n = track.sampleCount;
  check(n >= 2);
  for (let i = 0; i < n; i++) check(track.sizes[i]! > 0);
  const tables = children(buf, ...span(track.stbl));
  const { durations, total } = readStts(buf, tables, n);
  const ctts = readCtts(buf, tables, n);
  const key = readKeyframes(buf, tables, n);
  check(total > 0);
  // Strictly increasing decoding times (FFmpeg's index search walks over equal ones).
  for (let i = 0; i < n - 1; i++) check(durations[i]! > 0);

  const ts = track.timescale;
  const dts = new Float64Array(n);
  for (let i = 1; i < n; i++) dts[i] = dts[i - 1]! + durations[i - 1]!;
  const pts = (i: number) => dts[i]! + (ctts ? ctts[i]! : 0);

  // FFmpeg (mov_read_mdhd, then mov_read_stts; the same in 4.3, 5.1 and 7.1): st->duration is
  // the mdhd duration, then FFMIN(st->duration, stts total). Muxers disagree on mdhd: FFmpeg 5.1
  // stream-copying a trim with B-frames writes the span of the presentation times, one frame
  // past the samples' total (a B-frame of the last group was cut). A zero or all-ones mdhd
  // duration (FFmpeg 7 reads the latter as unknown) is not answered.
  check(track.mdhdDuration > 0);
  let duration = Math.min(track.mdhdDuration, total);
  let start = 0;
  if (track.edit) {
    const { mediaTime, segmentDuration } = track.edit;
    // The edit's length in the track's timescale, rounded to nearest as av_rescale does.
    const d = rescale(segmentDuration, ts, movieTimescale);
    // Replay of mov_fix_index for one edit [M, M + D): it keeps every sample when the first
    // sample is a keyframe presenting exactly at M (none earlier) and no keyframe before the
    // last sample ends the edit early (with ctts FFmpeg waits for the second such keyframe).
    // Samples presenting at or after M + D stay in the index, flagged discard: ffprobe still
    // reads (counts) them as packets. The stream duration becomes min(duration, D) (FFmpeg >= 6;
    // D rounded through the movie timescale often exceeds the track's own total by a tick).
    check(d > 0 && key[0] === 1 && pts(0) === mediaTime);
    check(mediaTime / ts <= MAX_EDIT_START_SEC);
    let enders = 0;
    for (let i = 0; i < n; i++) {
      const p = pts(i);
      check(i === 0 || p > mediaTime);
      const frameDuration = i + 1 < n ? dts[i + 1]! - dts[i]! : d;
      if (i < n - 1 && key[i] && p + frameDuration >= mediaTime + d) enders++;
    }
    check(enders <= (ctts ? 1 : 0));
    duration = Math.min(duration, d);
    start = mediaTime;
  }
  let lastEnd = 0;
  for (let i = 0; i < n; i++) lastEnd = Math.max(lastEnd, pts(i) - start + durations[i]!);

  const { codec, width, height } = readVisualEntry(buf, track.stsdEntry);
  return {
    durationSec: ffprobeSeconds(duration, ts),
    width,
    height,
    hasVideo: true,
    hasAudio,
    videoCodec: codec,
    fps: averageFrameRate(ts, n, total),
    videoPackets: n,
    lastEndSec: lastEnd / ts,
    prober: 'mp4',
  };
}

/** Codec and frame size of a visual sample entry (the fields FFmpeg reads, at the same offsets). */
function readVisualEntry(buf: Buffer, entry: Box): { codec: string; width: number; height: number } {
  const codec = VIDEO_CODECS[entry.type];
  check(codec !== undefined);
  // SampleEntry (8) + VisualSampleEntry fields (70) before the child boxes.
  check(entry.end - entry.start >= 78);
  check(buf.readUInt16BE(entry.start + 6) === 1); // data reference index
  const width = buf.readUInt16BE(entry.start + 24);
  const height = buf.readUInt16BE(entry.start + 26);
  check(width > 0 && height > 0);
  const boxes = children(buf, entry.start + 78, entry.end);
  if (entry.type === 'mp4v') check(esdsObjectType(buf, need(boxes, 'esds')) === 0x20); // MPEG-4 Part 2 visual
  if (codec === 'h264') {
    const size = avcFrameSize(buf, need(boxes, 'avcC'));
    check(size.width === width && size.height === height);
  }
  return { codec, width, height };
}

/** objectTypeIndication of the DecoderConfigDescriptor inside an esds box. */
function esdsObjectType(buf: Buffer, esds: Box): number {
  let pos = esds.start + 4;
  const end = esds.end;
  const descriptor = (tag: number): number => {
    check(pos < end && buf.readUInt8(pos) === tag);
    pos++;
    let len = 0;
    for (let i = 0; i < 4; i++) {
      check(pos < end);
      const b = buf.readUInt8(pos++);
      len = (len << 7) | (b & 0x7f);
      if (!(b & 0x80)) break;
    }
    check(pos + len <= end);
    return len;
  };
  descriptor(0x03);
  check(pos + 3 <= end);
  const flags = buf.readUInt8(pos + 2);
  pos += 3;
  if (flags & 0x80) pos += 2;
  if (flags & 0x40) {
    check(pos < end);
    pos += 1 + buf.readUInt8(pos);
  }
  if (flags & 0x20) pos += 2;
  descriptor(0x04);
  check(pos < end);
  return buf.readUInt8(pos);
}

/** av_rescale(a, b, c): a * b / c rounded to nearest, halves away from zero (a, b, c >= 0). */
function rescale(a: number, b: number, c: number): number {
  const r = (BigInt(a) * BigInt(b) + BigInt(c) / 2n) / BigInt(c);
  check(r <= BigInt(Number.MAX_SAFE_INTEGER));
  return Number(r);
}

/**
 * A duration as ffprobe prints it and probeVideo parses it back: `ts * av_q2d(1/timescale)` in
 * doubles, printed with printf's `%f` (6 decimals, exact value rounded half to even).
 */
export function ffprobeSeconds(ticks: number, timescale: number): number {
  return Number(printfF6(ticks * (1 / timescale)));
}

/** printf("%f", x) for a finite non-negative double: toFixed(6) except on exact ties, which C rounds to even. */
export function printfF6(x: number): string {
  const fixed = x.toFixed(6);
  const exact = x.toFixed(100);
  const dot = exact.indexOf('.');
  // A tie: exactly ...d5000... at the seventh decimal. toFixed rounded it up; C rounds to even.
  if (exact[dot + 7] === '5' && /^0*$/.test(exact.slice(dot + 8))) {
    const lastKept = Number(exact[dot + 6]);
    if (lastKept % 2 === 0) return exact.slice(0, dot + 7);
  }
  return fixed;
}

/** FFmpeg's avg_frame_rate for mp4: av_reduce(timescale * frames, stts total, INT_MAX), as a number. */
function averageFrameRate(timescale: number, frames: number, total: number): number {
  let num = BigInt(timescale) * BigInt(frames);
  let den = BigInt(total);
  const g = gcd(num, den);
  num /= g;
  den /= g;
  // Beyond INT_MAX av_reduce approximates: not replayed here.
  check(num <= 0x7fffffffn && den <= 0x7fffffffn);
  return Number(num) / Number(den);
}

function gcd(a: bigint, b: bigint): bigint {
  while (b) [a, b] = [b, a % b];
  return a;
}
