/**
 * The reply to the client's final dot, decided by what the upstream did with the
 * same message:
 * upstream 250 → 250 with the upstream's queue id; upstream 5xx → 5xx with its
 * reason; anything temporary or unknown → 451, so the client retries.
 */
import { type DeferReason, type UpstreamReplyLabel, upstreamReplyLabel } from '../ops/metrics';
import { deferred, type DsnOutcome, type Outcome, rejected } from './outcome';
import type { UpstreamAcceptance, UpstreamError } from './upstream';

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
export function acceptedReply(acceptance: UpstreamAcceptance, dsn?: DsnOutcome): Outcome {
  const line = acceptance.response || '250';
  const { text } = replyText(line);
  const refused = acceptance.rejected.map((refusal) => refusal.address);
  const partial = refused.length
    ? `; upstream refused ${refused.length} recipient(s): ${refused.slice(0, 3).join(', ')}${refused.length > 3 ? ', ...' : ''}${dsn ? `; ${DSN_TEXT[dsn]}` : ''}`
    : '';
  return {
    reply: { code: 250, status: '2.0.0', text: `Ok: queued as ${queueId(text) || 'unknown'}${partial}` },
    labels: { outcome: 'relayed', reason: 'ok' },
    upstream: { reply: line.trim(), label: '250', rejected: refused.length ? refused : undefined, dsn },
  };
}

/** Errors nodemailer reports when the connection itself failed rather than the server saying no. */
const TIMEOUT_CODES = new Set(['ETIMEDOUT']);
const UNAVAILABLE_CODES = new Set(['ECONNECTION', 'ESOCKET', 'EDNS', 'ETLS', 'EAUTH', 'ENOAUTH', 'EPROTOCOL']);

export function failedReply(err: UpstreamError): Outcome {
  if (err.code === 'ESLOTWAIT') {
    // nothing reached the upstream: the client's retry is the message's only copy
    return retry('4.7.0', 'Gateway busy: no upstream send slot in time, try again later', 'upstream_wait');
  }
  const code = err.responseCode ?? 0;
  const line = err.response?.toString().trim();
  if (code >= 500 && code <= 599 && line && err.code !== 'EAUTH' && err.code !== 'ETLS') {
    const { status, text } = replyText(line);
    return rejected({ code, status: status?.startsWith('5') ? status : '5.0.0', text: `Upstream refused the message: ${text}` }, 'upstream_permanent', {
      reply: line,
      label: upstreamReplyLabel(code),
    });
  }
  if (code >= 400 && code <= 499 && line) {
    const { status, text } = replyText(line);
    return retry(status?.startsWith('4') ? status : '4.0.0', `Upstream deferred the message: ${text}`, 'upstream_temporary', upstreamReplyLabel(code), line);
  }
  if (err.code && TIMEOUT_CODES.has(err.code)) {
    return retry('4.4.2', 'Upstream timed out, try again later', 'upstream_timeout', 'timeout', line);
  }
  if (err.code === 'ECONNECTION' && /closed unexpectedly/i.test(err.message ?? '')) {
    return retry('4.4.2', 'Upstream connection was lost, try again later', 'upstream_connection', 'connection_error', line);
  }
  if ((err.code && UNAVAILABLE_CODES.has(err.code)) || code >= 500) {
    // a 5xx to AUTH or STARTTLS is our configuration's problem, not the message's: defer it
    const label = code ? upstreamReplyLabel(code) : err.code === 'EPROTOCOL' ? 'protocol_error' : 'connection_error';
    return retry('4.4.1', 'Upstream unavailable, try again later', 'upstream_connection', label, line);
  }
  return retry('4.3.0', 'Temporary relay failure, try again later', 'internal_error', code ? upstreamReplyLabel(code) : undefined, line);
}

/** Our own shutdown overtook the transaction. */
export function shutdownReply(): Outcome {
  return retry('4.3.2', 'Gateway shutting down, try again later', 'shutdown');
}

/** 451: the client retries. */
function retry(status: string, text: string, reason: DeferReason, label?: UpstreamReplyLabel, reply?: string): Outcome {
  return deferred({ code: 451, status, text }, reason, label || reply ? { reply, label } : undefined);
}
