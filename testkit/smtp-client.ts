/**
 * The one raw SMTP client of the tests and benchmarks, over a bare socket: what
 * nodemailer rightly will not do — stop in the middle of DATA, send bare line
 * endings, send a PROXY header first, pipeline by hand, cut a connection, bind
 * another loopback source address. Replies are read whole (multi-line aware)
 * and decoded as latin1, so binary garbage survives.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface SmtpReply {
  /** Three-digit reply code. */
  readonly code: number;
  /** Text of every line of the reply, without the code and separator. */
  readonly lines: string[];
  /** The reply as sent, lines (code included) joined with \n, e.g. "250-first\n250 last". */
  readonly text: string;
}

export interface SmtpConnectOptions {
  readonly port: number;
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** Source address, e.g. 127.0.0.2 to be another client on loopback. */
  readonly localAddress?: string;
  /** Speak TLS from the first byte (implicit TLS), trusting this CA for the name "localhost". */
  readonly tlsCa?: Buffer;
  /** Bytes to send right after connecting, before the greeting (a PROXY header). */
  readonly preamble?: Buffer | string;
  /** Give up on connecting after this long. @default 10000 */
  readonly connectTimeoutMs?: number;
}

/** Thrown when the server closes the connection (or it breaks) while a reply is awaited. */
export class ConnectionClosedError extends Error {
  constructor(
    readonly reason: string,
    pending: string,
  ) {
    super(`connection closed (${reason}); buffered: ${JSON.stringify(pending)}`);
    this.name = 'ConnectionClosedError';
  }
}

/** Thrown when no reply arrives within the time allowed. */
export class ReplyTimeoutError extends Error {
  constructor(
    readonly timeoutMs: number,
    pending: string,
  ) {
    super(`no SMTP reply within ${timeoutMs} ms; buffered: ${JSON.stringify(pending)}`);
    this.name = 'ReplyTimeoutError';
  }
}

interface Waiter {
  resolve(reply: SmtpReply): void;
  reject(error: Error): void;
  timer?: NodeJS.Timeout;
}

/** "250 text", "250-text" (more lines follow) or a bare "250". */
const REPLY_LINE = /^(\d{3})(?:([ -])(.*))?$/;

/** Reply timeout when a call names none: long enough for a loaded 2-core machine, short of the test timeout. */
const DEFAULT_REPLY_TIMEOUT_MS = 10_000;

export class SmtpConnection {
  private pending = '';
  private partial: { lines: string[]; raw: string[] } = { lines: [], raw: [] };
  private readonly replies: SmtpReply[] = [];
  private readonly waiters: Waiter[] = [];
  private closedReason: string | undefined;
  private current: Socket | TLSSocket;
  /** Lines that did not parse as a reply (a server should never send them). */
  readonly garbage: string[] = [];

  private constructor(socket: Socket | TLSSocket) {
    this.current = socket;
    socket.setNoDelay(true);
    this.attach(socket);
  }

  /** Connects (and with `tlsCa` completes the TLS handshake); the greeting is the first reply(). */
  static async connect(options: SmtpConnectOptions): Promise<SmtpConnection> {
    const host = options.host ?? '127.0.0.1';
    const plain = await new Promise<Socket>((resolve, reject) => {
      const socket = netConnect({ host, port: options.port, localAddress: options.localAddress });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${host}:${options.port} timed out`));
      }, options.connectTimeoutMs ?? 10_000);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(socket);
      });
    });
    const connection = new SmtpConnection(options.tlsCa ? await upgrade(plain, options.tlsCa) : plain);
    if (options.preamble) connection.write(options.preamble);
    return connection;
  }

  /** The socket now (a TLS socket after startTls()). */
  get socket(): Socket | TLSSocket {
    return this.current;
  }

  /** True once the socket is gone. */
  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  write(data: string | Buffer): void {
    if (!this.closed) this.current.write(data);
  }

  /** The next reply; rejects when the connection closes or `timeoutMs` passes first. */
  reply(timeoutMs = DEFAULT_REPLY_TIMEOUT_MS): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedReason !== undefined) return Promise.reject(new ConnectionClosedError(this.closedReason, this.pending));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      waiter.timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(new ReplyTimeoutError(timeoutMs, this.pending));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Sends one command line (CRLF added) and returns its reply. */
  command(line: string, timeoutMs?: number): Promise<SmtpReply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** Upgrades with STARTTLS, after the server's 220 to the command, trusting `ca` for the name "localhost". */
  async startTls(ca: Buffer): Promise<void> {
    const plain = this.current;
    plain.removeAllListeners('data');
    this.current = await upgrade(plain as Socket, ca);
    this.attach(this.current);
  }

  /** Resolves when the peer has closed the connection; rejects if it is still open after `timeoutMs`. */
  waitClosed(timeoutMs = DEFAULT_REPLY_TIMEOUT_MS): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
      this.current.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Polite close: QUIT, then end. Never throws. */
  async quit(timeoutMs = 2_000): Promise<void> {
    if (!this.closed) {
      await this.command('QUIT', timeoutMs).catch(() => undefined);
      this.current.end();
    }
    this.destroy();
  }

  /** Abrupt close, as a crashing client would. */
  destroy(): void {
    this.current.destroy();
    this.onClose('destroyed by this client');
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.on('data', (chunk: Buffer) => this.onData(chunk.toString('latin1')));
    socket.on('error', (error: Error) => this.onClose(error.message));
    socket.on('close', () => this.onClose('closed by peer'));
  }

  private onData(text: string): void {
    this.pending += text;
    let end: number;
    while ((end = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, end).replace(/\r$/, '');
      this.pending = this.pending.slice(end + 1);
      const match = REPLY_LINE.exec(line);
      if (!match) {
        this.garbage.push(line);
        continue;
      }
      this.partial.lines.push(match[3] ?? '');
      this.partial.raw.push(line);
      if (match[2] !== '-') {
        this.deliver({ code: Number(match[1]), lines: this.partial.lines, text: this.partial.raw.join('\n') });
        this.partial = { lines: [], raw: [] };
      }
    }
  }

  private deliver(reply: SmtpReply): void {
    const waiter = this.waiters.shift();
    if (!waiter) {
      this.replies.push(reply);
      return;
    }
    clearTimeout(waiter.timer);
    waiter.resolve(reply);
  }

  private onClose(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new ConnectionClosedError(reason, this.pending));
    }
  }
}

function upgrade(socket: Socket, ca: Buffer): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ socket, ca, servername: 'localhost' }, () => {
      secure.off('error', reject);
      resolve(secure);
    });
    secure.once('error', reject);
  });
}

export interface OpenedConnection extends SmtpConnection {
  /** The server's first reply (absent with `skipGreeting`). */
  readonly greeting?: SmtpReply;
}

/** Connects to 127.0.0.1:`port` and reads the greeting (unless `skipGreeting`, e.g. to send a PROXY header's aftermath first). */
export async function openConnection(port: number, options: Omit<SmtpConnectOptions, 'port'> & { readonly skipGreeting?: boolean } = {}): Promise<OpenedConnection> {
  const connection = await SmtpConnection.connect({ ...options, port });
  const greeting = options.skipGreeting ? undefined : await connection.reply();
  return Object.assign(connection, { greeting });
}

/** Reads the greeting and sends EHLO; returns the EHLO keywords (upper case) or the refusing reply. */
export async function openSession(
  connection: SmtpConnection,
  heloName = 'bench.client.test',
  timeoutMs?: number,
): Promise<{ ok: true; extensions: Set<string> } | { ok: false; reply: SmtpReply }> {
  const greeting = await connection.reply(timeoutMs);
  if (greeting.code !== 220) return { ok: false, reply: greeting };
  const ehlo = await connection.command(`EHLO ${heloName}`, timeoutMs);
  if (ehlo.code !== 250) return { ok: false, reply: ehlo };
  return { ok: true, extensions: new Set(ehlo.lines.slice(1).map((line) => line.split(' ')[0].toUpperCase())) };
}

/** EHLO, MAIL FROM, RCPT TO and DATA up to the 354; returns the replies for assertions. */
export async function startData(connection: SmtpConnection, from: string, to: readonly string[]): Promise<SmtpReply[]> {
  const replies = [await connection.command('EHLO client.test'), await connection.command(`MAIL FROM:<${from}>`)];
  for (const rcpt of to) replies.push(await connection.command(`RCPT TO:<${rcpt}>`));
  replies.push(await connection.command('DATA'));
  return replies;
}

/**
 * MAIL FROM, RCPT TO for each recipient, DATA and `data` (ending with the "\r\n.\r\n");
 * stops at the first refusal and returns it, else the reply to the final dot.
 */
export async function sendMessage(connection: SmtpConnection, from: string, to: readonly string[], data: string): Promise<SmtpReply> {
  const mail = await connection.command(`MAIL FROM:<${from}>`);
  if (mail.code !== 250) return mail;
  for (const rcpt of to) {
    const reply = await connection.command(`RCPT TO:<${rcpt}>`);
    if (reply.code !== 250) return reply;
  }
  await connection.command('DATA');
  connection.write(data);
  return connection.reply();
}
