/**
 * A model folder's tokenizer: `tokenizer.json` through @huggingface/tokenizers and the chat
 * template (`chat_template` in tokenizer_config.json, or a `chat_template.jinja` file) through
 * @huggingface/jinja, rendered with the variables transformers' apply_chat_template passes.
 *
 * encodeChat renders the conversation message by message and tokenises each message's segment on
 * its own, so every message maps to an exact token span: the trainer masks the loss to the role's
 * turns with it, and the concatenated ids are what the model sees.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { RpvError } from '../util/errors.js';

/** One message of a chat, as chat templates and rpv's prompts take it. */
export interface ChatMessage {
  /** 'system', 'user' or 'assistant' in rpv's prompts; a template may know others (e.g. 'tool'). */
  role: string;
  content: string;
}

/** Token span of one message inside encodeChat's ids, [start, end). */
export interface MessageSpan {
  /** Index in the messages array. */
  index: number;
  role: string;
  /** First token of the message's segment (its header, e.g. `<|im_start|>assistant\n`). */
  start: number;
  /**
   * First token after the header: for assistant messages, where the reply starts (the header is
   * the template's generation prompt); for others equal to `start`.
   */
  contentStart: number;
  /** One past the last token of the segment (includes the end-of-turn token and what follows it up to the next message). */
  end: number;
}

export interface EncodedChat {
  ids: number[];
  spans: MessageSpan[];
  /** The rendered text (ids decode to it). */
  text: string;
  /** Span of the generation prompt at the end, when asked for. */
  generationPrompt?: { start: number; end: number };
}

export interface ChatTemplateOptions {
  /** Append the assistant header so the model writes the next reply. */
  addGenerationPrompt?: boolean;
}

type Json = Record<string, unknown>;

function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

export class ChatTokenizer {
  readonly bosToken?: string;
  readonly eosToken?: string;
  readonly padToken?: string;
  readonly unkToken?: string;
  private readonly template: Template | null;
  private readonly addBos: boolean;

  constructor(
    readonly tokenizer: Tokenizer,
    readonly config: Json,
    chatTemplate: string | null,
    /** Folder, for messages. */
    readonly dir = '',
  ) {
    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);
    this.padToken = tokenString(config.pad_token);
    this.unkToken = tokenString(config.unk_token);
    this.addBos = config.add_bos_token === true;
    this.template = chatTemplate ? new Template(chatTemplate) : null;
    this.chatTemplate = chatTemplate;
  }

  readonly chatTemplate: string | null;

  /** Load tokenizer.json, tokenizer_config.json and chat_template.jinja (if present) from `dir`. */
  static async load(dir: string): Promise<ChatTokenizer> {
    const readJson = async (name: string, required: boolean): Promise<Json | null> => {
      const file = path.join(dir, name);
      let text: string;
      try {
        text = await fs.readFile(file, 'utf8');
      } catch {
        if (required) throw new RpvError(`${file}: missing (the tokenizer needs it)`);
        return null;
      }
      try {
        return JSON.parse(text) as Json;
      } catch (err) {
        throw new RpvError(`${file}: not valid JSON: ${(err as Error).message}`);
      }
    };
    const tokenizerJson = (await readJson('tokenizer.json', true))!;
    const config = (await readJson('tokenizer_config.json', false)) ?? {};
    let template: string | null = null;
    const jinja = await fs.readFile(path.join(dir, 'chat_template.jinja'), 'utf8').catch(() => null);
    if (jinja !== null) template = jinja;
    else if (typeof config.chat_template === 'string') template = config.chat_template;
    else if (Array.isArray(config.chat_template)) {
      // A list of named templates: use `default`.
      const named = (config.chat_template as { name: string; template: string }[]).find((t) => t.name === 'default');
      template = named?.template ?? null;
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (err) {
      throw new RpvError(`${path.join(dir, 'tokenizer.json')}: cannot build the tokenizer: ${(err as Error).message}`);
    }
    return new ChatTokenizer(tokenizer, config, template, dir);
  }

  /** Vocabulary size including added tokens. */
  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }

  /** Text to ids; no BOS/EOS unless `addSpecialTokens` (then as the tokenizer's post-processor says). */
  encode(text: string, { addSpecialTokens = false }: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: ArrayLike<number>, { skipSpecialTokens = false }: { skipSpecialTokens?: boolean } = {}): string {
    // The library rejects an empty list; an empty span decodes to ''.
    if (ids.length === 0) return '';
    return this.tokenizer.decode(Array.from(ids), { skip_special_tokens: skipSpecialTokens });
  }

  /** Token strings of ids (byte-level symbols), for display. */
  idsToTokens(ids: ArrayLike<number>): string[] {
    return Array.from(ids, (id) => this.tokenizer.id_to_token(id) ?? `<unk:${id}>`);
  }

  /** Whether `id` is a token of this tokenizer (a model's vocab_size may be larger). */
  hasId(id: number): boolean {
    return this.tokenizer.id_to_token(id) != null;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  get eosTokenId(): number | undefined {
    return this.eosToken === undefined ? undefined : this.tokenToId(this.eosToken);
  }

  get padTokenId(): number | undefined {
    return this.padToken === undefined ? undefined : this.tokenToId(this.padToken);
  }

  /** Render messages with the chat template, as transformers' apply_chat_template(tokenize=False). */
  applyChatTemplate(messages: ChatMessage[], { addGenerationPrompt = false }: ChatTemplateOptions = {}): string {
    if (!this.template) throw new RpvError(`${this.dir || 'tokenizer'}: no chat template (tokenizer_config.json chat_template or chat_template.jinja)`);
    try {
      return this.template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bosToken ?? '',
        eos_token: this.eosToken ?? '',
        pad_token: this.padToken ?? '',
        unk_token: this.unkToken ?? '',
      });
    } catch (err) {
      if (err instanceof RpvError) throw err;
      throw new RpvError(`chat template: ${(err as Error).message}`);
    }
  }

  private renderPrefix(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    if (messages.length === 0 && !addGenerationPrompt) return '';
    try {
      return this.applyChatTemplate(messages, { addGenerationPrompt });
    } catch {
      // Templates that index messages[0] cannot render an empty conversation.
      return '';
    }
  }

  /**
   * Render and tokenise a conversation, returning each message's token span. Each message's
   * segment is the text its rendering adds; it is tokenised separately (header, then the rest),
   * so spans are exact.
   */
  encodeChat(messages: ChatMessage[], { addGenerationPrompt = false }: ChatTemplateOptions = {}): EncodedChat {
    const full = this.applyChatTemplate(messages, { addGenerationPrompt });
    const ids: number[] = [];
    const spans: MessageSpan[] = [];
    let prev = '';
    if (this.addBos && this.bosToken && !full.startsWith(this.bosToken)) {
      const bos = this.tokenToId(this.bosToken);
      if (bos !== undefined) ids.push(bos);
    }
    for (let i = 0; i < messages.length; i++) {
      const upto = i === messages.length - 1 && !addGenerationPrompt ? full : this.renderPrefix(messages.slice(0, i + 1), false);
      if (!upto.startsWith(prev) || !full.startsWith(upto)) {
        throw new RpvError(`chat template: rendering of messages 0..${i} is not a prefix of the whole conversation's rendering (a template that rewrites earlier turns cannot give per-message spans)`);
      }
      let header = '';
      if (messages[i].role === 'assistant') {
        const withPrompt = this.renderPrefix(messages.slice(0, i), true);
        if (withPrompt.startsWith(prev) && upto.startsWith(withPrompt)) header = withPrompt.slice(prev.length);
      }
      const segment = upto.slice(prev.length);
      const start = ids.length;
      if (header) ids.push(...this.encode(header));
      const contentStart = ids.length;
      ids.push(...this.encode(segment.slice(header.length)));
      spans.push({ index: i, role: messages[i].role, start, contentStart, end: ids.length });
      prev = upto;
    }
    let generationPrompt: EncodedChat['generationPrompt'];
    if (full.length > prev.length) {
      const start = ids.length;
      ids.push(...this.encode(full.slice(prev.length)));
      if (addGenerationPrompt) generationPrompt = { start, end: ids.length };
    }
    return { ids, spans, text: full, generationPrompt };
  }
}
