import type { SkipRecord, Turn } from '../shard/schema.js';

/**
 * One input record, normalised from any input format (rpv native, InternVL/LLaVA chat JSONL,
 * ShareGPT/LLaMA-Factory, MMRole, ChatHaruhi, RoleBench). Records that share a `video` are
 * grouped into one shard row by the converter.
 */
export interface SourceRecord {
  /** Input file the record came from, relative to the export root (for messages and skips). */
  file: string;
  /** 1-based line (JSONL) or array index + 1 (JSON array) in `file`. */
  line?: number;
  /** Video id: the shard row's `video_id`. Records that share a video share an id. */
  id: string;
  /** Media path as written in the record, relative to the export root; null for text-only. */
  video: string | null;
  /** `image` media become a one-frame video through the same encoders. Default `video`. */
  media?: 'video' | 'image';
  /** The role's name; a turn whose speaker equals it is the role speaking. */
  role: string;
  language?: string | null;
  platform?: string | null;
  profile?: string | null;
  summary?: string | null;
  dialogues: { id?: string; turns: Turn[] }[];
}

/** What a format reader yields: a record, or a skip with its reason. */
export type ParsedItem = { kind: 'record'; record: SourceRecord } | { kind: 'skip'; skip: SkipRecord };

/** Names accepted by `--input-format`. */
export type InputFormatName = 'rpv' | 'internvl' | 'sharegpt' | 'mmrole' | 'chatharuhi' | 'rolebench';

/** What every reader is told. */
export interface ReadOptions {
  /** The folder media paths are relative to. */
  root: string;
  /**
   * The role of records that name none (InternVL, ShareGPT: who speaks the assistant turns);
   * null: such a record is skipped with the reason. `rpv convert --default-role <name>`.
   */
  defaultRole?: string | null;
}

/** A reader of one input format. The converter auto-detects by calling `detect` in order. */
export interface InputFormat {
  name: InputFormatName;
  /** One line for `--help` and messages. */
  description: string;
  /** True when `input` (a folder or file) looks like this format. Cheap: reads a few lines. */
  detect(input: string): Promise<boolean>;
  /**
   * Yield every record or skip of `input`, in file order. `root` is the folder that media paths
   * are relative to. Never throws on bad rows: it yields a skip with the file, line and reason.
   */
  read(input: string, options: ReadOptions): AsyncGenerator<ParsedItem>;
}
