/**
 * Finds the top-level header block of a message as it streams past, lets the
 * caller check it (the header From rule, SMTPUTF8), adds a Received header and a
 * Message-ID/Date when missing, and passes the body through untouched. Only
 * the header block is held in memory, and only up to `maxHeaderBytes`; MIME
 * parts are never parsed, which keeps the per-message CPU cost low.
 * Expects CRLF line endings (the line-ending guard runs first).
 */
export interface HeaderRewriterOptions {
  /** Value of the Received header to prepend (without the "Received:" name). */
  readonly received: string;
  /** Header lines ("Name: value") added after the Received header. @default none */
  readonly added?: readonly string[];
  /** Domain used for a Message-ID the gateway has to add. */
  readonly messageIdDomain: string;
  /** Largest header block accepted. @default 262144 */
  readonly maxHeaderBytes?: number;
  /** Called once with the raw header block; an Error returned is thrown. */
  readonly inspect?: (block: Buffer) => Error | undefined;
}

/** A header block larger than allowed (thrown). */
export class HeaderTooLargeError extends Error {
  readonly code = 'HEADER_TOO_LARGE';
  constructor(limit: number) {
    super(`Message header block exceeds ${limit} bytes`);
  }
}

const SEPARATOR = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/**
 * Feed it the message chunks in order with write(), then end(); what it passes
 * on goes to `emit`. A plain object rather than a Transform, for the same
 * reason as the line-ending guard: the stream machinery per message cost more
 * than the work.
 */
export class HeaderRewriter {
  /** Bytes passed on so far, added headers included. */
  bytesOut = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inBody = false;
  private readonly maxHeaderBytes: number;

  constructor(private readonly options: HeaderRewriterOptions) {
    this.maxHeaderBytes = options.maxHeaderBytes ?? 256 * 1024;
  }

  /** Throws HeaderTooLargeError, or what `inspect` returned. */
  write(chunk: Buffer, emit: (chunk: Buffer) => void): void {
    if (this.inBody) return this.pass(chunk, emit);
    // search from 3 bytes before the new chunk so a separator split across chunks is found
    const searchFrom = Math.max(0, this.pendingBytes - 3);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const buffered = this.pending.length === 1 ? chunk : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [buffered];
    // a message that starts with an empty line has no header block at all
    const end = buffered.length >= 2 && buffered[0] === 0x0d && buffered[1] === 0x0a ? 0 : buffered.indexOf(SEPARATOR, searchFrom);
    if (end < 0) {
      if (this.pendingBytes > this.maxHeaderBytes) throw new HeaderTooLargeError(this.maxHeaderBytes);
      return;
    }
    const headerEnd = end === 0 ? 0 : end + 2;
    if (headerEnd > this.maxHeaderBytes) throw new HeaderTooLargeError(this.maxHeaderBytes);
    this.inBody = true;
    this.pending = [];
    this.pendingBytes = 0;
    // one chunk, so the upstream socket gets one write for header and first body bytes;
    // the rest starts with the CRLF of the separator line: rewrite() ends with the header lines only
    this.pass(Buffer.concat([this.rewrite(buffered.subarray(0, headerEnd)), buffered.subarray(headerEnd)]), emit);
  }

  /** The end of the message: one without a body separator gets its header block rewritten here. */
  end(emit: (chunk: Buffer) => void): void {
    if (this.inBody) return;
    this.inBody = true;
    this.pass(Buffer.concat([this.rewrite(Buffer.concat(this.pending, this.pendingBytes)), CRLF]), emit);
    this.pending = [];
  }

  private pass(chunk: Buffer, emit: (chunk: Buffer) => void): void {
    this.bytesOut += chunk.length;
    emit(chunk);
  }

  private rewrite(block: Buffer): Buffer {
    const problem = this.options.inspect?.(block);
    if (problem) throw problem;
    return this.surround(block);
  }

  /**
   * The block is never parsed and rebuilt: the added lines go around the
   * client's own bytes, which pass unchanged (so the upstream reads exactly the
   * header fields `inspect` was shown).
   */
  private surround(block: Buffer): Buffer {
    const text = block.toString('latin1');
    let after = block.length > 0 && !text.endsWith('\r\n') ? '\r\n' : '';
    if (!HAS_MESSAGE_ID.test(text)) after += `Message-ID: <${crypto.randomUUID()}@${this.options.messageIdDomain}>\r\n`;
    if (!HAS_DATE.test(text)) after += `Date: ${rfc5322DateNow()}\r\n`;
    const added = (this.options.added ?? []).map((line) => `${line}\r\n`).join('');
    const before = `${foldHeader('Received', this.options.received)}\r\n${added}`;
    return Buffer.concat([Buffer.from(before, 'latin1'), block, Buffer.from(after, 'latin1')]);
  }
}

const HAS_MESSAGE_ID = /(?:^|\n)message-id[ \t]*:/i;
const HAS_DATE = /(?:^|\n)date[ \t]*:/i;

/** "Name: value" folded at spaces into lines of at most 76 characters (RFC 5322 section 2.2.3). */
export function foldHeader(name: string, value: string): string {
  const text = `${name}: ${value.replace(/[\r\n]+/g, ' ')}`;
  if (text.length <= 76) return text;
  // A fold turns the space before a word into CRLF + space; scanned in place, once per message.
  let out = '';
  let lineStart = 0;
  let space = text.indexOf(' ');
  let lineHasText = space !== 0;
  while (space !== -1) {
    const next = text.indexOf(' ', space + 1);
    const wordLength = (next === -1 ? text.length : next) - space - 1;
    if (space - lineStart + 1 + wordLength > 76 && lineHasText) {
      out += `${text.slice(lineStart, space)}\r\n`;
      lineStart = space;
      lineHasText = wordLength > 0;
    } else if (wordLength > 0) {
      lineHasText = true;
    }
    space = next;
  }
  return out + text.slice(lineStart);
}

/** "Fri, 27 Nov 2026 13:33:12 +0000": toUTCString's fixed format with a numeric zone (as nodemailer dates its messages). */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

let lastSecond = -1;
let lastSecondDate = '';

/** rfc5322Date of now; formatted once a second, as every message in that second carries the same text. */
export function rfc5322DateNow(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== lastSecond) {
    lastSecond = second;
    lastSecondDate = rfc5322Date(new Date(second * 1000));
  }
  return lastSecondDate;
}
