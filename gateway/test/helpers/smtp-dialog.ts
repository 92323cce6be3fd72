/**
 * A bare SMTP client over a socket for tests that need what nodemailer will not
 * do: stop in the middle of DATA, send bare line endings, send a PROXY header,
 * pipeline by hand. Replies are read whole (multi-line aware).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface SmtpReplyLine {
  readonly code: number;
  /** The whole reply, lines joined with \n. */
  readonly text: string;
}

export interface SmtpDialog {
  readonly socket: Socket | TLSSocket;
  /** Waits for the next complete reply. */
  reply(timeoutMs?: number): Promise<SmtpReplyLine>;
  /** Sends a command line (CRLF added) and waits for its reply. */
  command(line: string, timeoutMs?: number): Promise<SmtpReplyLine>;
  /** Writes raw bytes, no reply expected. */
  write(data: string | Buffer): void;
  /** Upgrades with STARTTLS (after a 220 to the command). */
  startTls(ca: Buffer): Promise<void>;
  /** Resolves when the server closed the connection. */
  closed(timeoutMs?: number): Promise<void>;
  destroy(): void;
}

export interface DialogOptions {
  /** Bytes to send right after connecting, before the greeting (a PROXY header). */
  readonly preamble?: Buffer | string;
  /** Connect with implicit TLS, trusting this CA. */
  readonly tlsCa?: Buffer;
  /** Do not wait for the greeting. */
  readonly skipGreeting?: boolean;
  /** Source address, e.g. 127.0.0.2 to be another client on loopback. */
  readonly localAddress?: string;
}

export async function openDialog(port: number, options: DialogOptions = {}): Promise<SmtpDialog & { greeting?: SmtpReplyLine }> {
  const plain: Socket = await new Promise((resolve, reject) => {
    const s = netConnect({ port, host: '127.0.0.1', localAddress: options.localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  const ca = options.tlsCa;
  let socket: Socket | TLSSocket = ca
    ? await new Promise<TLSSocket>((resolve, reject) => {
        const s = tlsConnect({ socket: plain, ca, servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      })
    : plain;
  let buffer = '';
  let isClosed = false;
  const waiting: Array<() => void> = [];
  const attach = (s: Socket | TLSSocket) => {
    s.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      waiting.splice(0).forEach((wake) => wake());
    });
    s.on('close', () => {
      isClosed = true;
      waiting.splice(0).forEach((wake) => wake());
    });
    s.on('error', () => undefined);
  };
  attach(socket);
  if (options.preamble) socket.write(options.preamble);

  const takeReply = (): SmtpReplyLine | undefined => {
    const lines = buffer.split('\r\n');
    for (let i = 0; i < lines.length - 1; i++) {
      if (/^\d{3} /.test(lines[i]) || /^\d{3}$/.test(lines[i])) {
        const text = lines.slice(0, i + 1).join('\n');
        buffer = lines.slice(i + 1).join('\r\n');
        return { code: Number(lines[i].slice(0, 3)), text };
      }
    }
    return undefined;
  };

  const reply = (timeoutMs = 10_000) =>
    new Promise<SmtpReplyLine>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SMTP reply within ${timeoutMs} ms; buffered: ${JSON.stringify(buffer)}`)), timeoutMs);
      const attempt = () => {
        const got = takeReply();
        if (got) {
          clearTimeout(timer);
          return resolve(got);
        }
        if (isClosed) {
          clearTimeout(timer);
          return reject(Object.assign(new Error(`connection closed; buffered: ${JSON.stringify(buffer)}`), { code: 'CLOSED' }));
        }
        waiting.push(attempt);
      };
      attempt();
    });

  const dialog: SmtpDialog = {
    get socket() {
      return socket;
    },
    reply,
    command(line, timeoutMs) {
      socket.write(`${line}\r\n`);
      return reply(timeoutMs);
    },
    write(data) {
      socket.write(data);
    },
    async startTls(ca) {
      const plain = socket;
      plain.removeAllListeners('data');
      socket = await new Promise<TLSSocket>((resolve, reject) => {
        const s = tlsConnect({ socket: plain, ca, servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
      attach(socket);
    },
    closed(timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        if (isClosed) return resolve();
        const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    destroy() {
      socket.destroy();
    },
  };
  const greeting = options.skipGreeting ? undefined : await reply();
  return Object.assign(dialog, { greeting });
}

/** EHLO, MAIL FROM, RCPT TO and DATA up to the 354; returns the replies for assertions. */
export async function startData(dialog: SmtpDialog, from: string, to: readonly string[]): Promise<SmtpReplyLine[]> {
  const replies = [await dialog.command('EHLO client.test'), await dialog.command(`MAIL FROM:<${from}>`)];
  for (const rcpt of to) replies.push(await dialog.command(`RCPT TO:<${rcpt}>`));
  replies.push(await dialog.command('DATA'));
  return replies;
}

/**
 * MAIL FROM, RCPT TO for each recipient, DATA and `data` (ending with the "\r\n.\r\n");
 * stops at the first refusal and returns it, else the reply to the final dot.
 */
export async function sendMessage(dialog: SmtpDialog, from: string, to: readonly string[], data: string): Promise<SmtpReplyLine> {
  const mail = await dialog.command(`MAIL FROM:<${from}>`);
  if (mail.code !== 250) return mail;
  for (const rcpt of to) {
    const reply = await dialog.command(`RCPT TO:<${rcpt}>`);
    if (reply.code !== 250) return reply;
  }
  await dialog.command('DATA');
  dialog.write(data);
  return dialog.reply();
}
