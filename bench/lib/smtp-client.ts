/**
 * A deliberately small SMTP client over a raw `net` socket: the load generator
 * and the hostile-input suites need byte-exact control (pipelining, bare LF,
 * cutting a connection mid-DATA) that nodemailer rightly does not give.
 */
import net from 'node:net';

export interface SmtpReply {
  /** Three-digit reply code. */
  readonly code: number;
  /** Text of every line of the reply, without the code and separator. */
  readonly lines: string[];
}

export interface SmtpConnectOptions {
  readonly host: string;
  readonly port: number;
  /** Source address to bind, e.g. 127.0.0.2 to appear as another client. */
  readonly localAddress?: string;
  /** Give up on connecting after this long. @default 10000 */
  readonly connectTimeoutMs?: number;
}

/** Thrown when the server closes the connection (or it breaks) while a reply is awaited. */
export class ConnectionClosedError extends Error {
  constructor(readonly reason: string) {
    super(`connection closed: ${reason}`);
    this.name = 'ConnectionClosedError';
  }
}

/** Thrown when no reply arrives within the time allowed. */
export class ReplyTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no reply within ${timeoutMs} ms`);
    this.name = 'ReplyTimeoutError';
  }
}

interface Waiter {
  resolve(reply: SmtpReply): void;
  reject(error: Error): void;
  timer?: NodeJS.Timeout;
}

const REPLY_LINE = /^(\d{3})([ -])(.*)$/;

export class SmtpConnection {
  /** Every byte received, decoded as latin1 so binary garbage survives. */
  private pending = '';
  private partial: string[] = [];
  private readonly replies: SmtpReply[] = [];
  private readonly waiters: Waiter[] = [];
  private closedReason: string | undefined;
  /** Lines that did not parse as a reply (a server should never send them). */
  readonly garbage: string[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk.toString('latin1')));
    socket.on('error', (error: Error) => this.onClose(error.message));
    socket.on('close', () => this.onClose('closed by peer'));
  }

  static connect(options: SmtpConnectOptions): Promise<SmtpConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: options.host, port: options.port, localAddress: options.localAddress });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${options.host}:${options.port} timed out`));
      }, options.connectTimeoutMs ?? 10_000);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(new SmtpConnection(socket));
      });
    });
  }

  /** True once the socket is gone. */
  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  write(data: string | Buffer): void {
    if (!this.closed) this.socket.write(data);
  }

  /** The next reply; rejects when the connection closes or `timeoutMs` passes first. */
  reply(timeoutMs = 120_000): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedReason !== undefined) return Promise.reject(new ConnectionClosedError(this.closedReason));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      waiter.timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(new ReplyTimeoutError(timeoutMs));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Sends one command line (CRLF added) and returns its reply. */
  async command(line: string, timeoutMs?: number): Promise<SmtpReply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** Resolves when the peer closes (or after `timeoutMs`, resolving false). */
  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Polite close: QUIT, then end. Never throws. */
  async quit(timeoutMs = 2_000): Promise<void> {
    if (!this.closed) {
      await this.command('QUIT', timeoutMs).catch(() => undefined);
      this.socket.end();
    }
    this.destroy();
  }

  /** Abrupt close, as a crashing client would. */
  destroy(): void {
    this.socket.destroy();
    this.onClose('destroyed by this client');
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
      this.partial.push(match[3]);
      if (match[2] === ' ') {
        this.deliver({ code: Number(match[1]), lines: this.partial });
        this.partial = [];
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
      waiter.reject(new ConnectionClosedError(reason));
    }
  }
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
