/**
 * SES v2 SendEmail errors as SMTP-shaped failures (the fields reply-mapping.ts
 * reads), so a message sent through the API gets the reply an SMTP upstream
 * would have caused. README.md ("SES errors and the client's reply") is this
 * table in prose; keep them together.
 *
 * The rule: a failure that may pass (throttling, SES having trouble, a pause an
 * operator can lift, our own credentials or configuration) is 4xx, so the
 * sender keeps the message and retries; a refusal of this message or sender
 * that no retry can change is 5xx with SES's reason.
 */
import type { UpstreamError } from './upstream';

export type SesFailure = Error & UpstreamError;

interface Mapping {
  readonly code: number;
  readonly status: string;
  /** Why, before SES's own message. */
  readonly reason: string;
  /** `EAUTH`: SES refused the gateway's own credentials (counted and logged as such). */
  readonly errorCode?: string;
}

/** By the error's name (SES v2 API reference, SendEmail "Errors", and the common AWS errors). */
export const SES_ERROR_REPLIES: Readonly<Record<string, Mapping>> = {
  TooManyRequestsException: { code: 454, status: '4.7.0', reason: 'Throttling failure' },
  LimitExceededException: { code: 454, status: '4.7.0', reason: 'Sending quota exceeded' },
  // an operator can resume sending; the sender's retries should find it resumed
  SendingPausedException: { code: 451, status: '4.7.0', reason: 'Sending paused for this account or configuration set' },
  // lifting a suspension takes an AWS case: retries within a sender's queue lifetime would not help
  AccountSuspendedException: { code: 554, status: '5.7.0', reason: 'SES account suspended' },
  MessageRejected: { code: 554, status: '5.6.0', reason: 'Message rejected' },
  MailFromDomainNotVerifiedException: { code: 550, status: '5.7.1', reason: 'MAIL FROM domain not verified' },
  BadRequestException: { code: 554, status: '5.6.0', reason: 'Message refused' },
  // the configured configuration set is missing: the gateway's configuration, not the message, is wrong
  NotFoundException: { code: 451, status: '4.3.5', reason: 'SES resource not found' },
  AccessDeniedException: { code: 451, status: '4.7.0', reason: 'SES access denied', errorCode: 'EAUTH' },
  UnrecognizedClientException: { code: 451, status: '4.7.0', reason: 'AWS credentials refused', errorCode: 'EAUTH' },
  InvalidClientTokenId: { code: 451, status: '4.7.0', reason: 'AWS credentials refused', errorCode: 'EAUTH' },
  ExpiredTokenException: { code: 451, status: '4.7.0', reason: 'AWS credentials expired', errorCode: 'EAUTH' },
  InvalidSignatureException: { code: 451, status: '4.7.0', reason: 'AWS request signature refused', errorCode: 'EAUTH' },
  CredentialsProviderError: { code: 451, status: '4.7.0', reason: 'No AWS credentials', errorCode: 'EAUTH' },
};

/** Errors of the connection itself, as nodemailer reports them, so the SMTP and SES paths read alike. */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

interface SdkError {
  readonly name?: string;
  readonly message?: string;
  readonly code?: string;
  readonly $fault?: 'client' | 'server';
  readonly $metadata?: { readonly httpStatusCode?: number };
}

export function sesFailure(thrown: unknown): SesFailure {
  const error = (thrown ?? {}) as SdkError;
  const name = error.name ?? 'Error';
  const message = oneLine(error.message ?? '');
  if (name === 'AbortError') return Object.assign(new Error(message || 'aborted'), { name });
  const mapped = SES_ERROR_REPLIES[name];
  if (mapped) return smtpFailure(mapped.code, mapped.status, `${mapped.reason}: ${message || name}`, mapped.errorCode);
  const errno = error.code ?? '';
  // before the timeout: the SDK names a reset connection a TimeoutError too, keeping its errno
  if (RESET_CODES.has(errno)) return Object.assign(new Error(`SES connection closed unexpectedly (${errno})`), { code: 'ECONNECTION' });
  if (name === 'TimeoutError') return Object.assign(new Error(`SES request timed out: ${message}`), { code: 'ETIMEDOUT' });
  if (CONNECT_CODES.has(errno)) return Object.assign(new Error(`cannot reach SES (${errno}): ${message}`), { code: 'ECONNECTION' });
  const status = error.$metadata?.httpStatusCode ?? 0;
  if (error.$fault === 'server' || status >= 500) {
    return smtpFailure(451, '4.4.1', `SES service error (HTTP ${status || 'unknown'} ${name}): ${message}`);
  }
  // an error this table does not know yet: deferred, so nothing is lost while the reply is logged
  return smtpFailure(451, '4.3.0', `SES error ${name}${status ? ` (HTTP ${status})` : ''}: ${message}`);
}

/** A failure carrying an SMTP reply line, the way nodemailer reports an upstream's refusal. */
export function smtpFailure(code: number, status: string, text: string, errorCode?: string): SesFailure {
  return Object.assign(new Error(text), { responseCode: code, response: `${code} ${status} ${text}`, code: errorCode });
}

const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
