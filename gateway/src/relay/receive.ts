/**
 * The client's DATA, received whole into the spool in one pass through the
 * message checks: size, the line-ending guard and the header rewriter (header
 * From check, Received, Message-ID, Date). Nothing goes upstream here. Any
 * failure before the dot (size, bare line endings, header From, a full spool,
 * the client leaving, our shutdown) discards what was spooled, and the rest
 * of the client's data is read and thrown away, never stored.
 */
import type { Readable } from 'node:stream';
import { HeaderRewriter } from './header-rewriter';
import { LineEndingGuard, type LineEndingMode } from './line-endings';
import { aborted, deferred, type Outcome, RefusalError, rejected } from './outcome';
import { shutdownReply } from './reply-mapping';
import type { Spool, SpoolEntry } from './spool';

/** smtp-server's DATA stream (the fields used here). */
export type DataStream = Readable & { sizeExceeded?: boolean; byteLength?: number };

export interface ReceiveOptions {
  readonly spool: Spool;
  readonly lineEndings: LineEndingMode;
  readonly maxMessageBytes: number;
  /** Value of the Received header to add. */
  readonly received: string;
  /** Header lines ("Name: value") added after the Received header. @default none */
  readonly added?: readonly string[];
  readonly messageIdDomain: string;
  /** Checks the raw header block; returns the refusal, if any. */
  readonly inspectHeaders?: (block: Buffer) => RefusalError | undefined;
  /** Aborted when the gateway gives up on in-flight transactions (end of the drain grace period). */
  readonly shutdown?: AbortSignal;
}

export type Reception = { readonly sizeIn: number; readonly sizeOut: number } & (
  | { readonly message: SpoolEntry; readonly failure?: undefined }
  | { readonly message?: undefined; readonly failure: Outcome }
);

const CLIENT_GONE = aborted({ code: 421, status: '4.4.2', text: 'Connection lost during DATA' }, 'client_disconnect');

export function receiveMessage(stream: DataStream, options: ReceiveOptions): Promise<Reception> {
  return new Promise((resolve) => {
    const guard = new LineEndingGuard({ mode: options.lineEndings });
    const rewriter = new HeaderRewriter({
      received: options.received,
      added: options.added,
      messageIdDomain: options.messageIdDomain,
      inspect: options.inspectHeaders,
    });
    const entry = options.spool.create();
    let sizeIn = 0;
    let settled = false;
    let clientEnded = false;
    /** The last file write; the client is paused until it is done. */
    let lastWrite: Promise<unknown> | undefined;

    const settle = (failure?: Outcome) => {
      if (settled) return;
      settled = true;
      options.shutdown?.removeEventListener('abort', onShutdown);
      stream.removeListener('error', onClientGone);
      stream.removeListener('close', onClientGone);
      const sizes = { sizeIn, sizeOut: rewriter.bytesOut };
      resolve(failure ? { ...sizes, failure } : { ...sizes, message: entry });
    };

    // Stops storing and keeps reading (and dropping) what the client sends until its dot.
    const fail = (result: Outcome) => {
      if (settled) return;
      void entry.discard();
      stream.resume();
      settle(result);
    };
    const failWith = (err: Error) => fail(streamFailure(err));

    const store = (chunk: Buffer) => {
      const written = entry.write(chunk);
      if (!written) return;
      stream.pause();
      lastWrite = written;
      written.then(() => {
        if (lastWrite === written && !settled) stream.resume();
      }, failWith);
    };
    const toRewriter = (chunk: Buffer) => rewriter.write(chunk, store);

    const onShutdown = () => fail(shutdownReply());
    if (options.shutdown?.aborted) return fail(shutdownReply());
    options.shutdown?.addEventListener('abort', onShutdown, { once: true });

    stream.on('data', (chunk: Buffer) => {
      if (settled) return;
      sizeIn += chunk.length;
      // checked before the chunk is stored
      if (stream.sizeExceeded || sizeIn > options.maxMessageBytes) {
        return fail(rejected({ code: 552, status: '5.3.4', text: `Message exceeds the maximum size of ${options.maxMessageBytes} bytes` }, 'message_size'));
      }
      try {
        guard.write(chunk, toRewriter);
      } catch (err) {
        failWith(err as Error);
      }
    });
    stream.once('end', () => {
      clientEnded = true;
      if (settled) return;
      let closing: Promise<unknown> | undefined;
      try {
        guard.end(toRewriter);
        rewriter.end(store);
        closing = entry.end();
      } catch (err) {
        return failWith(err as Error);
      }
      if (!closing) return settle();
      closing.then(() => settle(), failWith);
    });
    const onClientGone = () => {
      if (!clientEnded) fail(CLIENT_GONE);
    };
    stream.once('error', onClientGone);
    stream.once('close', onClientGone);
  });
}

function streamFailure(err: Error & { code?: string }): Outcome {
  if (err instanceof RefusalError) return err.outcome;
  if (err.code === 'BARE_LINE_ENDING') {
    return rejected({ code: 550, status: '5.6.0', text: 'Bare CR or LF in message data is not allowed; lines must end with CRLF' }, 'line_endings');
  }
  if (err.code === 'HEADER_TOO_LARGE') {
    return rejected({ code: 552, status: '5.3.4', text: err.message }, 'invalid_message');
  }
  if (err.code === 'SPOOL_FULL') {
    // RFC 5321 452 / RFC 3463 4.3.1: our storage is full; the client retries later or elsewhere
    return deferred({ code: 452, status: '4.3.1', text: 'Insufficient system storage, try again later' }, 'spool_full');
  }
  return deferred({ code: 451, status: '4.3.0', text: 'Temporary failure processing the message' }, 'internal_error');
}
