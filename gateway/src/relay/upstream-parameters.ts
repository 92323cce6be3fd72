/**
 * The ESMTP parameters of a relayed message (BODY, SMTPUTF8, RET, ENVID on MAIL
 * FROM; NOTIFY, ORCPT on each RCPT TO), as they go on the upstream's command
 * lines.
 *
 * nodemailer decides these parameters by itself and drops the ones the
 * connection's EHLO did not offer: SMTPUTF8 only for a non-ASCII address, BODY
 * only from its own guess, one NOTIFY/ORCPT for all recipients, and nothing at
 * all (silently) when the extension is missing. A relay must forward what its
 * client asked for, per recipient, or refuse. So for a gateway message the
 * connection's MAIL FROM and RCPT TO lines carry exactly the parameters the
 * gateway gives, and a connection whose EHLO lacks an extension they need fails
 * the message before MAIL FROM (451 4.3.0: upstream.extensions promised it)
 * instead of sending it without.
 *
 * nodemailer-adapter.ts puts these lines on nodemailer's connection;
 * gateway/test/upstream-parameters.test.ts checks they reach a real server as
 * intended.
 */
import type { ForwardedExtension } from '../config/constants';

/** DSN parameters of one recipient (RFC 3461 section 4), as the client gave them. */
export interface RecipientDsn {
  /** "NEVER" or a comma list of SUCCESS, FAILURE, DELAY. */
  readonly notify?: string;
  /** "addr-type;address", decoded from xtext. */
  readonly orcpt?: string;
}

/** Everything the client asked of the upstream besides the addresses. */
export interface EnvelopeParameters {
  /** RFC 6152 BODY=, when the client gave it. */
  readonly body?: '7BIT' | '8BITMIME';
  /** RFC 6531: the client used SMTPUTF8. */
  readonly smtpUtf8?: boolean;
  /** RFC 3461 RET= and ENVID= (decoded from xtext). */
  readonly ret?: 'FULL' | 'HDRS';
  readonly envid?: string;
  /** NOTIFY and ORCPT by recipient address (as it is sent upstream). */
  readonly recipients?: ReadonlyMap<string, RecipientDsn>;
}

/** The extensions an upstream must have offered for these parameters to go out. */
export function requiredExtensions(parameters: EnvelopeParameters): ForwardedExtension[] {
  const needed: ForwardedExtension[] = [];
  if (parameters.body) needed.push('8BITMIME');
  if (parameters.smtpUtf8) needed.push('SMTPUTF8');
  if (parameters.ret || parameters.envid || [...(parameters.recipients?.values() ?? [])].some((dsn) => dsn.notify || dsn.orcpt)) needed.push('DSN');
  return needed;
}

export function mailParameters(parameters: EnvelopeParameters): string[] {
  const out: string[] = [];
  if (parameters.body) out.push(`BODY=${parameters.body}`);
  if (parameters.smtpUtf8) out.push('SMTPUTF8');
  if (parameters.ret) out.push(`RET=${parameters.ret}`);
  if (parameters.envid) out.push(`ENVID=${xtext(parameters.envid)}`);
  return out;
}

export function rcptParameters(parameters: EnvelopeParameters, recipient: string): string[] {
  const dsn = parameters.recipients?.get(recipient);
  const out: string[] = [];
  if (dsn?.notify) out.push(`NOTIFY=${dsn.notify}`);
  if (dsn?.orcpt) {
    const semicolon = dsn.orcpt.indexOf(';');
    out.push(`ORCPT=${dsn.orcpt.slice(0, semicolon + 1)}${xtext(dsn.orcpt.slice(semicolon + 1))}`);
  }
  return out;
}

/** RFC 3461 section 4: "+", "=" and anything outside "!" to "~" as "+XX". */
export function xtext(value: string): string {
  return Array.from(Buffer.from(value, 'utf8'))
    .map((byte) => (byte >= 0x21 && byte <= 0x7e && byte !== 0x2b && byte !== 0x3d ? String.fromCharCode(byte) : `+${byte.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

const MAIL_FROM = /^MAIL FROM:<([^>]*)>/;
const RCPT_TO = /^RCPT TO:<([^>]*)>/;

/** A command line with nodemailer's own parameters replaced by the gateway's. */
export function commandWithParameters(line: string, parameters: EnvelopeParameters): string {
  const mail = MAIL_FROM.exec(line);
  if (mail) return [mail[0], ...mailParameters(parameters)].join(' ');
  const rcpt = RCPT_TO.exec(line);
  if (rcpt) return [rcpt[0], ...rcptParameters(parameters, rcpt[1])].join(' ');
  return line;
}

/** Thrown into the send when the connection lacks an extension the message needs. */
export function missingExtensionError(missing: readonly string[]): Error & { code: string; responseCode: number; response: string } {
  const response = `451 4.3.0 the upstream did not offer ${missing.join(', ')} in its EHLO, which upstream.extensions lists and this message needs`;
  return Object.assign(new Error(response), { code: 'EENVELOPE', responseCode: 451, response });
}
