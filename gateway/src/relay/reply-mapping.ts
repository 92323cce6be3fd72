/**
 * The reply to the client's final dot, decided by what the upstream did with the
 * same message:
 * upstream 250 → 250 with the upstream's queue id; upstream 5xx → 5xx with its
 * reason; anything temporary or unknown → 451, so the client retries.
 */
import type { DeferReason, MessageLabels, UpstreamReplyLabel } from '../ops/metrics';
import type { SmtpReply } from '../smtp/smtp-reply';
import type { UpstreamAcceptance } from './upstream';

export type TransactionResult = MessageLabels & {
  readonly reply: SmtpReply;
  /** The upstream's own reply line, when there was one. */
  readonly upstreamReply?: string;
  /** Recipients the upstream refused at RCPT while it took the message for the others. */
  readonly upstreamRejected?: readonly string[];
  /** What became of the notification to the sender about `upstreamRejected`. */
  readonly dsn?: DsnOutcome;
  /** The upstream's reply code, or why there was none; absent when the upstream was not involved. */
  readonly upstreamLabel?: UpstreamReplyLabel;
};

/** What nodemailer reports for a failed send (the fields used here). */
export interface UpstreamError {
  readonly code?: string;
  readonly responseCode?: number;
  readonly response?: string;
  readonly message?: string;
}

const MAX_REASON = 200;
const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})\s+/;

/** Text of a reply line without its basic and enhanced codes, on one line, bounded. */
export function replyText(line: string): { status?: string; text: string } {
  let status: string | undefined;
  // a multi-line reply repeats its codes on every line: keep the words only
  let text = line
    .split(/\r?\n/)
    .map((part) => {
      let rest = part.trim().replace(/^\d{3}[ -]?/, '');
      const enhanced = ENHANCED.exec(rest);
      if (enhanced) {
        status ??= enhanced[1];
        rest = rest.slice(enhanced[0].length);
      }
      return rest;
    })
    .filter(Boolean)
    .join(' ');
  text = text.replace(/[^\x20-\x7e]/g, '?').trim();
  if (text.length > MAX_REASON) text = `${text.slice(0, MAX_REASON - 3)}...`;
  return { status, text };
}

/**
 * The upstream's queue id out of its 250 text: "Ok: queued as 4Fx9" (Postfix),
 * "Ok 0100018b…" (SES), or the whole text when neither shape fits.
 */
export function queueId(text: string): string {
  const match = /queued as\s+(\S+)/i.exec(text) ?? /^ok:?\s+(\S+)$/i.exec(text);
  return match ? match[1] : text;
}

/** What became of the delivery status notification for recipients the upstream refused. */
export type DsnOutcome = 'sent' | 'failed' | 'null_sender' | 'not_requested';

const DSN_TEXT: Record<DsnOutcome, string> = {
  sent: 'the sender was sent a delivery status notification',
  failed: 'the delivery status notification to the sender could not be sent',
  null_sender: 'no delivery status notification for a null sender',
  not_requested: 'the sender asked for no delivery status notification (NOTIFY)',
};

/**
 * SMTP has no way to tell the client after DATA that some recipients failed, and
 * the others already have the message: the sender gets a delivery status
 * notification (dsn.ts), and the reply text and the log name the refused ones.
 * Only permanent refusals get here: a deferred recipient fails the whole
 * attempt before its data (smtp-upstream.ts).
 */
export function acceptedReply(acceptance: UpstreamAcceptance, dsn?: DsnOutcome): TransactionResult {
  const line = acceptance.response || '250';
  const { text } = replyText(line);
  const rejected = acceptance.rejected.map((refusal) => refusal.address);
  const partial = rejected.length
    ? `; upstream refused ${rejected.length} recipient(s): ${rejected.slice(0, 3).join(', ')}${rejected.length > 3 ? ', ...' : ''}${dsn ? `; ${DSN_TEXT[dsn]}` : ''}`
    : '';
  return {
    reply: { code: 250, status: '2.0.0', text: `Ok: queued as ${queueId(text) || 'unknown'}${partial}` },
    upstreamRejected: rejected.length ? rejected : undefined,
    dsn,
    outcome: 'relayed',
    reason: 'ok',
    upstreamReply: line.trim(),
    upstreamLabel: '250',
  };
}

/** Errors nodemailer reports when the connection itself failed rather than the server saying no. */
const TIMEOUT_CODES = new Set(['ETIMEDOUT']);
const UNAVAILABLE_CODES = new Set(['ECONNECTION', 'ESOCKET', 'EDNS', 'ETLS', 'EAUTH', 'ENOAUTH', 'EPROTOCOL']);

export function failedReply(err: UpstreamError): TransactionResult {
  const code = err.responseCode ?? 0;
  const line = err.response?.toString().trim();
  if (code >= 500 && code <= 599 && line && err.code !== 'EAUTH' && err.code !== 'ETLS') {
    const { status, text } = replyText(line);
    return {
      reply: { code, status: status?.startsWith('5') ? status : '5.0.0', text: `Upstream refused the message: ${text}` },
      outcome: 'rejected',
      reason: 'upstream_permanent',
      upstreamReply: line,
      upstreamLabel: codeLabel(code),
    };
  }
  if (code >= 400 && code <= 499 && line) {
    const { status, text } = replyText(line);
    return deferred(status?.startsWith('4') ? status : '4.0.0', `Upstream deferred the message: ${text}`, 'upstream_temporary', codeLabel(code), line);
  }
  if (err.code && TIMEOUT_CODES.has(err.code)) {
    return deferred('4.4.2', 'Upstream timed out, try again later', 'upstream_timeout', 'timeout', line);
  }
  if (err.code === 'ECONNECTION' && /closed unexpectedly/i.test(err.message ?? '')) {
    return deferred('4.4.2', 'Upstream connection was lost, try again later', 'upstream_connection', 'connection_error', line);
  }
  if ((err.code && UNAVAILABLE_CODES.has(err.code)) || code >= 500) {
    // a 5xx to AUTH or STARTTLS is our configuration's problem, not the message's: defer it
    const label = code ? codeLabel(code) : err.code === 'EPROTOCOL' ? 'protocol_error' : 'connection_error';
    return deferred('4.4.1', 'Upstream unavailable, try again later', 'upstream_connection', label, line);
  }
  return deferred('4.3.0', 'Temporary relay failure, try again later', 'internal_error', code ? codeLabel(code) : undefined, line);
}

/** Our own shutdown overtook the transaction. */
export function shutdownReply(): TransactionResult {
  return deferred('4.3.2', 'Gateway shutting down, try again later', 'shutdown');
}

function deferred(status: string, text: string, reason: DeferReason, upstreamLabel?: UpstreamReplyLabel, upstreamReply?: string): TransactionResult {
  return { reply: { code: 451, status, text }, outcome: 'deferred', reason, upstreamReply, upstreamLabel };
}

const codeLabel = (code: number) => String(code) as UpstreamReplyLabel;
