/**
 * One message from the client's DATA to the reply to its final dot: receive it
 * whole into the spool (receive.ts), only then hand it to the upstream, which
 * takes a connection and sends at its own speed; the client's reply is the
 * upstream's (reply-mapping.ts). Recipients the upstream refused permanently
 * while it took the message for others get a delivery status notification to
 * the sender (dsn.ts). The spooled copy is discarded before the reply is given.
 */
import { buildDsn, headerBlock } from './dsn';
import { type DataStream, type ReceiveOptions, receiveMessage } from './receive';
import type { DsnOutcome, Outcome } from './outcome';
import { acceptedReply, failedReply, shutdownReply } from './reply-mapping';
import { sesHeaders } from './ses-headers';
import { bufferedMessage } from './spool';
import type { Envelope, SpooledMessage, Upstream, UpstreamAcceptance } from './upstream';

export interface RelayOptions extends ReceiveOptions {
  readonly upstream: Upstream;
  /** Header From of delivery status notifications. */
  readonly dsnFrom: string;
}

export interface RelayRecord {
  readonly outcome: Outcome;
  /** Bytes received from the client. */
  readonly sizeIn: number;
  /** Bytes handed to the upstream (with the added headers). */
  readonly sizeOut: number;
  /** True when the message spilled from memory to spool.dir. */
  readonly spilled?: boolean;
  /** Seconds the upstream took, from handing it the message to its reply; absent if it never replied. */
  readonly upstreamSeconds?: number;
  /** Why a delivery status notification could not be sent, when it could not. */
  readonly dsnError?: string;
}

const NEVER_ABORTED = new AbortController().signal;

export async function relayMessage(stream: DataStream, envelope: Envelope, options: RelayOptions): Promise<RelayRecord> {
  const arrival = new Date();
  const received = await receiveMessage(stream, { ...options, added: options.upstream.applicationHeaders ? sesHeaders(envelope.application) : [] });
  const { sizeIn, sizeOut } = received;
  if (!received.message) return { outcome: received.failure, sizeIn, sizeOut };
  const message = received.message;
  // the upstream stops on the gateway's own shutdown signal: no controller and listener per message
  const signal = options.shutdown ?? NEVER_ABORTED;
  const started = performance.now();
  const record = (outcome: Outcome, replied: boolean, dsnError?: string): RelayRecord => ({
    outcome,
    sizeIn,
    sizeOut,
    spilled: message.spilled,
    upstreamSeconds: replied ? (performance.now() - started) / 1000 : undefined,
    dsnError,
  });
  try {
    if (options.shutdown?.aborted) return record(shutdownReply(), false);
    let acceptance: UpstreamAcceptance;
    try {
      acceptance = await options.upstream.send(envelope, message, signal);
    } catch (err) {
      return signal.aborted ? record(shutdownReply(), false) : record(failedReply(err as Error), true);
    }
    if (!acceptance.rejected.length) return record(acceptedReply(acceptance), true);
    const notified = await notifySender(envelope, acceptance, message, arrival, options, signal);
    return record(acceptedReply(acceptance, notified.outcome), true, notified.error);
  } finally {
    await message.discard();
  }
}

/** Sends the delivery status notification for the refused recipients; never throws. */
async function notifySender(
  envelope: Envelope,
  acceptance: UpstreamAcceptance,
  message: SpooledMessage,
  arrivalDate: Date,
  options: RelayOptions,
  signal: AbortSignal,
): Promise<{ outcome: DsnOutcome; error?: string }> {
  // RFC 5321 section 4.5.5: never a notification about a notification
  if (!envelope.from) return { outcome: 'null_sender' };
  // RFC 3461 section 4.1: a recipient given NOTIFY without FAILURE (or NEVER) gets no failure notice
  const dsnOf = (address: string) => envelope.parameters?.recipients?.get(address);
  const refusals = acceptance.rejected
    .filter((refusal) => !dsnOf(refusal.address)?.notify || /\bFAILURE\b/.test(dsnOf(refusal.address)?.notify ?? ''))
    .map((refusal) => ({ ...refusal, orcpt: dsnOf(refusal.address)?.orcpt }));
  if (!refusals.length) return { outcome: 'not_requested' };
  try {
    const dsn = buildDsn({
      reportingMta: options.messageIdDomain,
      remoteMta: options.upstream.remoteName,
      from: options.dsnFrom,
      sender: envelope.from,
      refusals,
      envid: envelope.parameters?.envid,
      headers: await headerBlock(message),
      arrivalDate,
    });
    await options.upstream.send({ from: '', to: [envelope.from] }, bufferedMessage(dsn), signal);
    return { outcome: 'sent' };
  } catch (err) {
    const e = err as { response?: string; message?: string };
    return { outcome: 'failed', error: (e.response ?? e.message ?? String(err)).toString() };
  }
}
