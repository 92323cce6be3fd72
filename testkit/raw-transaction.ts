/**
 * One SMTP transaction with byte-exact data, step by step or all pipelined in
 * one write (as an attacker would, PIPELINING or not): what the hostile-input
 * suites send through the gateway.
 */
import { ConnectionClosedError, ReplyTimeoutError, SmtpConnection, type SmtpConnectOptions, type SmtpReply, openSession } from './smtp-client';

export interface RawTransactionOptions {
  readonly localAddress?: string;
  /** Everything in one write: MAIL, RCPT, DATA, the data, QUIT. @default false */
  readonly pipelining?: boolean;
  readonly from?: string;
  readonly to?: string;
  /** Commands sent after EHLO and before MAIL (e.g. AUTH), one reply each. */
  readonly before?: readonly string[];
  /** Message data including its final "<CRLF>.<CRLF>" (or whatever the test wants to end it with). */
  readonly data: string | Buffer;
  /** @default 15000 */
  readonly replyTimeoutMs?: number;
}

export interface RawTransactionResult {
  /** One reply per command after EHLO, in order (the greeting or EHLO reply only if it refused). */
  readonly replies: SmtpReply[];
  /** Code of the reply to the final dot (or of the last reply if it never got that far); 0 if none. */
  readonly finalCode: number;
  /** The server closed the connection. */
  readonly closed: boolean;
}

export async function rawTransaction(target: Pick<SmtpConnectOptions, 'host' | 'port'>, options: RawTransactionOptions): Promise<RawTransactionResult> {
  const connection = await SmtpConnection.connect({ ...target, localAddress: options.localAddress });
  const timeout = options.replyTimeoutMs ?? 15_000;
  const replies: SmtpReply[] = [];
  let finalCode = 0;
  let closed = false;
  const next = async () => {
    const reply = await connection.reply(timeout);
    replies.push(reply);
    return reply;
  };
  try {
    const session = await openSession(connection, 'hostile.client.test', timeout);
    if (!session.ok) return { replies: [session.reply], finalCode: session.reply.code, closed: connection.closed };
    for (const command of options.before ?? []) {
      connection.write(`${command}\r\n`);
      await next();
    }
    const mail = `MAIL FROM:<${options.from ?? 'sender@bench.test'}>\r\n`;
    const rcpt = `RCPT TO:<${options.to ?? 'rcpt@sink.test'}>\r\n`;
    if (options.pipelining) {
      connection.write(Buffer.concat([Buffer.from(`${mail}${rcpt}DATA\r\n`), Buffer.from(options.data), Buffer.from('QUIT\r\n')]));
      // MAIL, RCPT, DATA, the dot, QUIT: up to five replies, fewer if the server closes.
      for (let i = 0; i < 5; i += 1) {
        const reply = await next();
        if (i === 3 || (i < 3 && reply.code >= 400)) finalCode = finalCode || reply.code;
        if (reply.code === 221) break;
      }
    } else {
      connection.write(mail);
      if ((finalCode = (await next()).code) !== 250) return { replies, finalCode, closed: connection.closed };
      connection.write(rcpt);
      const rcptReply = await next();
      if (rcptReply.code !== 250 && rcptReply.code !== 251) return { replies, finalCode: rcptReply.code, closed: connection.closed };
      connection.write('DATA\r\n');
      const data = await next();
      if (data.code !== 354) return { replies, finalCode: data.code, closed: connection.closed };
      connection.write(options.data);
      finalCode = (await next()).code;
      await connection.quit();
    }
  } catch (error) {
    if (!(error instanceof ConnectionClosedError || error instanceof ReplyTimeoutError)) throw error;
    closed = error instanceof ConnectionClosedError;
  } finally {
    connection.destroy();
  }
  return { replies, finalCode, closed };
}
