/**
 * One SMTP transaction with byte-exact commands and data, step by step or all
 * pipelined in one write (as an attacker would, PIPELINING or not): what the
 * hostile-input suites send through the gateway, and what the envelope and
 * header suites send when a parameter or header must arrive exactly as written.
 */
import { ConnectionClosedError, ReplyTimeoutError, SmtpConnection, type SmtpConnectOptions, type SmtpReply } from './smtp-client';

export interface RawTransactionOptions {
  readonly localAddress?: string;
  /** Everything in one write: MAIL, RCPT, DATA, the data, QUIT. @default false */
  readonly pipelining?: boolean;
  /** Commands sent after EHLO and before MAIL (e.g. AUTH), one reply each. */
  readonly before?: readonly string[];
  /** The MAIL FROM command line as sent, parameters included. @default 'MAIL FROM:<sender@bench.test>' */
  readonly mail?: string;
  /** The RCPT TO command lines as sent, parameters included. @default ['RCPT TO:<rcpt@sink.test>'] */
  readonly rcpts?: readonly string[];
  /** Message data including its final "<CRLF>.<CRLF>" (or whatever the test wants to end it with); see messageData(). */
  readonly data: string | Buffer;
  /** @default 15000 */
  readonly replyTimeoutMs?: number;
}

export interface RawTransactionResult {
  /** The reply to EHLO (absent when the greeting refused). */
  readonly ehlo?: SmtpReply;
  /** One reply per command after EHLO, in order (the greeting or EHLO reply only if it refused). */
  readonly replies: SmtpReply[];
  /** The reply that ended the transaction: the answer to the final dot, or the refusal that stopped it; absent if none came. */
  readonly final?: SmtpReply;
  /** The server closed the connection. */
  readonly closed: boolean;
}

/** Message data from header lines (a line starting with whitespace folds) and a body, ended by the final dot. */
export function messageData(headers: readonly string[], body = 'hello'): string {
  return `${headers.join('\r\n')}\r\n\r\n${body}\r\n.\r\n`;
}

export async function rawTransaction(target: Pick<SmtpConnectOptions, 'host' | 'port'>, options: RawTransactionOptions): Promise<RawTransactionResult> {
  const connection = await SmtpConnection.connect({ ...target, localAddress: options.localAddress });
  const timeout = options.replyTimeoutMs ?? 15_000;
  const replies: SmtpReply[] = [];
  let ehlo: SmtpReply | undefined;
  let final: SmtpReply | undefined;
  let closed = false;
  const next = async () => {
    const reply = await connection.reply(timeout);
    replies.push(reply);
    return reply;
  };
  const mail = `${options.mail ?? 'MAIL FROM:<sender@bench.test>'}\r\n`;
  const rcpts = (options.rcpts ?? ['RCPT TO:<rcpt@sink.test>']).map((line) => `${line}\r\n`);
  try {
    const greeting = await connection.reply(timeout);
    if (greeting.code !== 220) return { replies: [greeting], final: greeting, closed: connection.closed };
    ehlo = await connection.command('EHLO hostile.client.test', timeout);
    if (ehlo.code !== 250) return { replies: [ehlo], final: ehlo, closed: connection.closed };
    for (const command of options.before ?? []) {
      connection.write(`${command}\r\n`);
      await next();
    }
    if (options.pipelining) {
      connection.write(Buffer.concat([Buffer.from(`${mail}${rcpts.join('')}DATA\r\n`), Buffer.from(options.data), Buffer.from('QUIT\r\n')]));
      // MAIL, each RCPT, DATA, the dot, QUIT: that many replies, fewer if the server closes.
      const dot = rcpts.length + 2;
      for (let i = 0; i <= dot + 1; i += 1) {
        const reply = await next();
        if (!final && (i === dot || (i < dot && reply.code >= 400))) final = reply;
        if (reply.code === 221) break;
      }
    } else {
      connection.write(mail);
      if ((final = await next()).code !== 250) return { ehlo, replies, final, closed: connection.closed };
      for (const rcpt of rcpts) {
        connection.write(rcpt);
        final = await next();
        if (final.code !== 250 && final.code !== 251) return { ehlo, replies, final, closed: connection.closed };
      }
      connection.write('DATA\r\n');
      if ((final = await next()).code !== 354) return { ehlo, replies, final, closed: connection.closed };
      connection.write(options.data);
      final = await next();
      await connection.quit();
    }
  } catch (error) {
    if (!(error instanceof ConnectionClosedError || error instanceof ReplyTimeoutError)) throw error;
    closed = error instanceof ConnectionClosedError;
  } finally {
    connection.destroy();
  }
  return { ehlo, replies, final, closed };
}
