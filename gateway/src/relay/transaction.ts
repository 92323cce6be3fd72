/**
 * One message from the client's DATA to the reply to its final dot. The data is
 * streamed through the line-ending guard and the header rewriter straight into
 * the upstream transport. Any failure before the dot (size, bare line endings,
 * header From, the client leaving, our shutdown) aborts the upstream
 * transaction: the raw stream is destroyed and the upstream connection closed
 * without the final dot, and the rest of the client's data is read and thrown
 * away, never buffered. The result is the client's reply (reply-mapping.ts).
 */
import type { Readable } from 'node:stream';
import type { RejectReason } from '../ops/metrics';
import type { SmtpReply } from '../smtp/smtp-reply';
import { HeaderRewriter } from './header-rewriter';
import { LineEndingGuard, type LineEndingMode } from './line-endings';
import { acceptedReply, failedReply, shutdownReply, type TransactionResult } from './reply-mapping';
import { sesHeaders } from './ses-headers';
import type { Envelope, Upstream } from './upstream';

/** smtp-server's DATA stream (the fields used here). */
export type DataStream = Readable & { sizeExceeded?: boolean; byteLength?: number };

export interface RelayOptions {
  readonly upstream: Upstream;
  readonly lineEndings: LineEndingMode;
  readonly maxMessageBytes: number;
  /** Value of the Received header to add. */
  readonly received: string;
  readonly messageIdDomain: string;
  /** Checks the raw header block; returns the refusal, if any. */
  readonly inspectHeaders?: (block: Buffer) => Refusal | undefined;
  /** Aborted when the gateway gives up on in-flight transactions (end of the drain grace period). */
  readonly shutdown?: AbortSignal;
}

/** A policy refusal raised while the message streams. */
export class Refusal extends Error {
  constructor(
    readonly reply: SmtpReply,
    readonly reason: RejectReason,
  ) {
    super(reply.text);
  }
}

export interface RelayRecord {
  readonly result: TransactionResult;
  /** Bytes received from the client. */
  readonly sizeIn: number;
  /** Bytes handed to the upstream (with the added headers). */
  readonly sizeOut: number;
  /** Seconds the upstream took, from handing it the message to its reply; absent if it never replied. */
  readonly upstreamSeconds?: number;
}

export function relayMessage(stream: DataStream, envelope: Envelope, options: RelayOptions): Promise<RelayRecord> {
  return new Promise((resolve) => {
    const abort = new AbortController();
    const guard = new LineEndingGuard({ mode: options.lineEndings });
    const rewriter = new HeaderRewriter({
      received: options.received,
      added: options.upstream.applicationHeaders ? sesHeaders(envelope.application) : [],
      messageIdDomain: options.messageIdDomain,
      inspect: options.inspectHeaders,
    });
    let sizeIn = 0;
    let upstreamStarted = 0;
    let settled = false;

    const settle = (result: TransactionResult, upstreamReplied: boolean) => {
      if (settled) return;
      settled = true;
      options.shutdown?.removeEventListener('abort', onShutdown);
      const upstreamSeconds = upstreamReplied ? (performance.now() - upstreamStarted) / 1000 : undefined;
      resolve({ result, sizeIn, sizeOut: rewriter.bytesOut, upstreamSeconds });
    };

    // Stops everything that still flows towards the upstream and keeps reading
    // (and dropping) what the client sends until its dot.
    const fail = (result: TransactionResult, upstreamReplied = false) => {
      if (settled) return;
      stream.unpipe(guard);
      abort.abort();
      guard.destroy();
      // with an error, so the upstream side sees a failed stream and never an end
      rewriter.destroy(new Error(`transaction aborted: ${result.reason}`));
      stream.resume();
      settle(result, upstreamReplied);
    };

    const onShutdown = () => fail(shutdownReply());
    if (options.shutdown?.aborted) return fail(shutdownReply());
    options.shutdown?.addEventListener('abort', onShutdown, { once: true });

    // Registered before the pipe so an oversized chunk is stopped before it is forwarded.
    stream.on('data', (chunk: Buffer) => {
      sizeIn += chunk.length;
      if (stream.sizeExceeded || sizeIn > options.maxMessageBytes) {
        fail(refused({ code: 552, status: '5.3.4', text: `Message exceeds the maximum size of ${options.maxMessageBytes} bytes` }, 'message_size'));
      }
    });
    let clientEnded = false;
    stream.once('end', () => {
      clientEnded = true;
    });
    const onClientGone = () => {
      if (!clientEnded) fail({ reply: { code: 421, status: '4.4.2', text: 'Connection lost during DATA' }, outcome: 'aborted', reason: 'client_disconnect' });
    };
    stream.once('error', onClientGone);
    stream.once('close', onClientGone);

    guard.on('error', (err) => fail(streamFailure(err)));
    rewriter.on('error', (err) => fail(streamFailure(err)));

    stream.pipe(guard).pipe(rewriter);
    upstreamStarted = performance.now();
    options.upstream.send(envelope, rewriter, abort.signal).then(
      (info) => settle(acceptedReply(info), true),
      (err) => {
        if (abort.signal.aborted) return;
        fail(failedReply(err), true);
      },
    );
  });
}

function refused(reply: SmtpReply, reason: RejectReason): TransactionResult {
  return { reply, outcome: 'rejected', reason };
}

function streamFailure(err: Error & { code?: string }): TransactionResult {
  if (err instanceof Refusal) return refused(err.reply, err.reason);
  if (err.code === 'BARE_LINE_ENDING') {
    return refused({ code: 550, status: '5.6.0', text: 'Bare CR or LF in message data is not allowed; lines must end with CRLF' }, 'line_endings');
  }
  if (err.code === 'HEADER_TOO_LARGE') {
    return refused({ code: 552, status: '5.3.4', text: err.message }, 'invalid_message');
  }
  return { reply: { code: 451, status: '4.3.0', text: 'Temporary failure processing the message' }, outcome: 'deferred', reason: 'internal_error' };
}
