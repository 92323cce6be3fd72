/**
 * A reply the gateway sends for a refused command, in the shape smtp-server
 * expects from a hook callback (an Error with `responseCode`). The enhanced
 * status code goes in the text because the server's own mapping would turn
 * every 550 into 5.0.0.
 */
export interface SmtpReply {
  /** Basic reply code, e.g. 550. */
  readonly code: number;
  /** Enhanced status code (RFC 3463), e.g. "5.7.1". */
  readonly status: string;
  /** Human readable text, without codes. */
  readonly text: string;
}

export type SmtpReplyError = Error & { responseCode: number };

export function smtpError(code: number, status: string, text: string): SmtpReplyError {
  const err = new Error(`${status} ${text}`) as SmtpReplyError;
  err.responseCode = code;
  return err;
}

export function toError(reply: SmtpReply): SmtpReplyError {
  return smtpError(reply.code, reply.status, reply.text);
}

export function formatReply(reply: SmtpReply): string {
  return `${reply.code} ${reply.status} ${reply.text}`;
}
