/**
 * Guards the DATA stream against bare CR and bare LF. SMTP lines end with CRLF;
 * servers that also accept a bare LF (or `\n.\r\n`) as a line end disagree with
 * the gateway about where a message ends, which is what SMTP smuggling exploits
 * to slip a second, forged message past the upstream. By default the guard
 * refuses the message at the first bare line ending; `normalize` rewrites them
 * to CRLF instead, for senders that cannot be fixed.
 *
 * This sits on the DATA hot path, so it scans with Buffer#indexOf (native
 * memchr) rather than per byte in JS, and passes clean chunks through untouched.
 * It is a plain object fed chunk by chunk, not a stream: a Transform per
 * message cost more CPU (pipes, listeners, buffering) than the scan itself.
 */

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

export type LineEndingMode = 'reject' | 'normalize';

export interface LineEndingGuardOptions {
  /** `reject` errors at the first bare CR or LF; `normalize` rewrites them to CRLF. */
  readonly mode: LineEndingMode;
}

/** A bare CR or bare LF in message data; `offset` is its position in the data stream. */
export class BareLineEndingError extends Error {
  readonly code = 'BARE_LINE_ENDING';
  /** SMTP reply code for smtp-server's onData callback: permanent, the message as sent can never pass. */
  readonly responseCode = 550;
  constructor(
    readonly which: 'CR' | 'LF',
    readonly offset: number,
  ) {
    super(`Message data contains a bare ${which} at byte ${offset}; every line must end with CRLF`);
    this.name = 'BareLineEndingError';
  }
}

/** Feed it the DATA chunks in order with write(), then end(); what passes goes to `emit`. */
export class LineEndingGuard {
  readonly mode: LineEndingMode;
  /** Bare line endings rewritten so far (normalize mode). */
  normalized = 0;
  /** Data bytes seen so far (before normalizing). */
  private seen = 0;
  /** The previous chunk ended with a CR whose partner is still to come. */
  private pendingCR = false;

  constructor(options: LineEndingGuardOptions) {
    const { mode } = options;
    if (mode !== 'reject' && mode !== 'normalize') {
      throw new TypeError(`LineEndingGuard mode must be "reject" or "normalize", got ${JSON.stringify(mode)}`);
    }
    this.mode = mode;
  }

  /** Passes `chunk` on (rewritten in normalize mode); throws BareLineEndingError in reject mode. */
  write(chunk: Buffer, emit: (chunk: Buffer) => void): void {
    if (chunk.length === 0) return;
    if (this.mode === 'reject') {
      const error = this.findBare(chunk);
      this.seen += chunk.length;
      if (error) throw error;
      return emit(chunk);
    }
    this.normalizeChunk(chunk, emit);
    this.seen += chunk.length;
  }

  /** The end of the data: a CR still waiting for its LF is bare. */
  end(emit: (chunk: Buffer) => void): void {
    if (!this.pendingCR) return;
    this.pendingCR = false;
    if (this.mode === 'reject') throw new BareLineEndingError('CR', this.seen - 1);
    this.normalized++;
    emit(CRLF);
  }

  /** The first bare CR or LF in `chunk`, or null; updates pendingCR. */
  private findBare(chunk: Buffer): BareLineEndingError | null {
    const last = chunk.length - 1;
    if (this.pendingCR && chunk[0] !== LF) return new BareLineEndingError('CR', this.seen - 1);
    let lf = chunk.indexOf(LF, this.pendingCR ? 1 : 0);
    let cr = chunk.indexOf(CR);
    // walk both in step: every LF must follow a CR, every CR must precede an LF
    while (lf !== -1 || cr !== -1) {
      if (cr !== -1 && (lf === -1 || cr < lf - 1)) {
        if (cr === last) break;
        return new BareLineEndingError('CR', this.seen + cr);
      }
      if (lf === 0 || cr !== lf - 1) return new BareLineEndingError('LF', this.seen + lf);
      cr = chunk.indexOf(CR, lf + 1);
      lf = chunk.indexOf(LF, lf + 1);
    }
    this.pendingCR = chunk[last] === CR;
    return null;
  }

  /** Emits `chunk` with bare CR and LF rewritten to CRLF; a trailing CR is held until the next byte is known. */
  private normalizeChunk(chunk: Buffer, emit: (chunk: Buffer) => void): void {
    let start = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      emit(CRLF);
      if (chunk[0] === LF) start = 1;
      else this.normalized++;
    }
    const end = chunk.length;
    const parts: Buffer[] = [];
    let from = start;
    let lf = chunk.indexOf(LF, start);
    let cr = chunk.indexOf(CR, start);
    while (lf !== -1 || cr !== -1) {
      if (cr !== -1 && (lf === -1 || cr < lf - 1)) {
        parts.push(chunk.subarray(from, cr));
        from = cr + 1;
        if (from === end) {
          // undecided until the next chunk shows whether an LF follows
          this.pendingCR = true;
          break;
        }
        parts.push(CRLF);
        this.normalized++;
        cr = chunk.indexOf(CR, from);
        continue;
      }
      if (lf === start || cr !== lf - 1) {
        parts.push(chunk.subarray(from, lf), CRLF);
        this.normalized++;
        from = lf + 1;
      }
      cr = chunk.indexOf(CR, lf + 1);
      lf = chunk.indexOf(LF, lf + 1);
    }
    if (from === 0) return emit(chunk);
    if (from < end) parts.push(chunk.subarray(from));
    const out = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    if (out.length > 0) emit(out);
  }
}
