/**
 * What became of a message or a command, in one vocabulary from the policy
 * that refuses it to the SMTP reply the client gets and the labels
 * smtp_gateway_messages_total counts it by: the reply (code, enhanced status,
 * text) and the labels travel together, so neither is derived from the other.
 */
import type { AbortReason, DeferReason, MessageLabels, RejectReason, UpstreamReplyLabel } from '../ops/metrics';
import type { SmtpReply } from '../smtp/smtp-reply';

export interface Outcome {
  /** What the client is told. */
  readonly reply: SmtpReply;
  /** How smtp_gateway_messages_total counts it; `deferred` and `aborted` are temporary for the client. */
  readonly labels: MessageLabels;
  /** What the upstream said, when it was involved. */
  readonly upstream?: UpstreamReport;
}

/** What became of the delivery status notification for recipients the upstream refused. */
export type DsnOutcome = 'sent' | 'failed' | 'null_sender' | 'not_requested';

export interface UpstreamReport {
  /** The upstream's own reply line, when there was one. */
  readonly reply?: string;
  /** Its reply code, or why there was none (smtp_gateway_upstream_replies_total). */
  readonly label?: UpstreamReplyLabel;
  /** Recipients it refused at RCPT while it took the message for the others. */
  readonly rejected?: readonly string[];
  /** What became of the notification to the sender about `rejected`. */
  readonly dsn?: DsnOutcome;
}

/** A permanent refusal: the reply must be 5xx. */
export function rejected(reply: SmtpReply, reason: RejectReason, upstream?: UpstreamReport): Outcome {
  return { reply: checked(reply, 5, reason), labels: { outcome: 'rejected', reason }, upstream };
}

/** A temporary refusal the client retries: the reply must be 4xx. */
export function deferred(reply: SmtpReply, reason: DeferReason, upstream?: UpstreamReport): Outcome {
  return { reply: checked(reply, 4, reason), labels: { outcome: 'deferred', reason }, upstream };
}

/** The transaction ended without the client hearing a reply to its dot; the reply is for the log. */
export function aborted(reply: SmtpReply, reason: AbortReason): Outcome {
  return { reply: checked(reply, 4, reason), labels: { outcome: 'aborted', reason } };
}

/** A refusal on its way through a stream's error channel (the header checks refuse while the message streams). */
export class RefusalError extends Error {
  constructor(readonly outcome: Outcome) {
    super(outcome.reply.text);
  }
}

function checked(reply: SmtpReply, digit: 4 | 5, reason: string): SmtpReply {
  if (Math.floor(reply.code / 100) !== digit || !reply.status.startsWith(`${digit}.`)) {
    throw new Error(`reply ${reply.code} ${reply.status} for reason ${reason}: expected a ${digit}xx code with a ${digit}.x.x status`);
  }
  return reply;
}
