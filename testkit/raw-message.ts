/**
 * One message sent as raw bytes over a real SMTP dialog: the MAIL FROM and RCPT
 * TO lines exactly as given (parameters included), then the header lines and
 * a body. Returns every reply, the last one being the answer to the final dot
 * (or the refusal that ended the transaction early).
 */
import { openConnection, type SmtpReply } from './smtp-client';

export interface RawMessage {
  /** The MAIL FROM command line, e.g. "MAIL FROM:<a@b.example> BODY=8BITMIME". */
  readonly mail: string;
  /** RCPT TO command lines. */
  readonly rcpts: readonly string[];
  /** Header lines without line endings (a line starting with whitespace folds). */
  readonly headers: readonly string[];
  /** @default 'hello' */
  readonly body?: string;
}

export interface RawResult {
  readonly replies: SmtpReply[];
  /** The reply that ended the transaction. */
  readonly last: SmtpReply;
}

export async function sendRaw(port: number, message: RawMessage, track: <T extends { destroy(): unknown }>(x: T) => T): Promise<RawResult> {
  const dialog = track(await openConnection(port));
  const replies = [await dialog.command('EHLO client.test')];
  const done = (): RawResult => ({ replies, last: replies[replies.length - 1] });
  for (const line of [message.mail, ...message.rcpts, 'DATA']) {
    const reply = await dialog.command(line);
    replies.push(reply);
    if (reply.code >= 400) return done();
  }
  dialog.write(`${message.headers.join('\r\n')}\r\n\r\n${message.body ?? 'hello'}\r\n.\r\n`);
  replies.push(await dialog.reply());
  await dialog.command('QUIT');
  return done();
}
