/**
 * A generated reply's text, streamed token by token without ever cutting a character.
 *
 * A byte-level tokenizer splits a multi-byte UTF-8 character (Chinese, emoji) across tokens, so a
 * token on its own may decode to an incomplete byte sequence (U+FFFD). The stream decodes a short
 * window of recent tokens (the last emitted piece plus the new tokens, as Hugging Face TGI does,
 * so tokenizers that drop a leading space still decode each piece right) and holds the new text
 * back while it ends in an incomplete sequence. At the end, a character cut off by the token limit
 * is dropped rather than shown as U+FFFD. Bytes that can never form a character (a model that
 * emits an invalid sequence) stay U+FFFD, as every UTF-8 decoder shows them.
 */
export class TokenTextStream {
  private readonly ids: number[] = [];
  /** Start of the decode window (a character boundary). */
  private prefixOffset = 0;
  /** Tokens before this have been emitted. */
  private readOffset = 0;
  private textValue = '';

  /** `decode`: token ids to text (special tokens skipped). */
  constructor(private readonly decode: (ids: number[]) => string) {}

  /** Everything emitted so far. */
  get text(): string {
    return this.textValue;
  }

  /** Add a token; returns the text it completes ('' while a character is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const { before, now } = this.window();
    if (now.length <= before.length || now.endsWith('\uFFFD')) return '';
    return this.emit(now.slice(before.length), this.ids.length);
  }

  /** The text still held at the end, without a trailing incomplete character. */
  finish(): string {
    const { before, now } = this.window();
    const rest = now.length > before.length ? now.slice(before.length).replace(/\uFFFD+$/, '') : '';
    return rest === '' ? '' : this.emit(rest, this.ids.length);
  }

  private window(): { before: string; now: string } {
    return {
      before: this.decode(this.ids.slice(this.prefixOffset, this.readOffset)),
      now: this.decode(this.ids.slice(this.prefixOffset)),
    };
  }

  private emit(piece: string, upTo: number): string {
    this.prefixOffset = this.readOffset;
    this.readOffset = upTo;
    this.textValue += piece;
    return piece;
  }
}
