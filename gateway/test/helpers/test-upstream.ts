/**
 * A real SMTP upstream for tests (smtp-server on an ephemeral loopback port)
 * that can accept, refuse with 4xx/5xx, stall after the data, or drop the
 * connection in the middle of the data. It records every DATA attempt, so a
 * test can assert both what was delivered (`messages`: the final dot arrived
 * and the upstream said 250) and what was cut off (`attempts` that never
 * completed).
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';

export type TestUpstreamMode = 'accept' | 'reject4xx' | 'reject5xx' | 'stall' | 'drop-mid-data';

export interface TestUpstreamOptions {
  /** @default 'accept' */
  readonly mode?: TestUpstreamMode;
  /** Where reject4xx/reject5xx refuse: at MAIL FROM, RCPT TO, or after the data. @default 'data' */
  readonly rejectAt?: 'mail' | 'rcpt' | 'data';
  /** Wait this long after the final dot before replying (a slow smarthost). */
  readonly replyDelayMs?: number;
  /** Answer 421 and close at MAIL FROM once a connection has carried this many messages (an idle-closing smarthost). */
  readonly maxMessagesPerConnection?: number;
  /** Refuse this recipient (or these) at RCPT TO with 550 whatever the mode. */
  readonly rejectRecipient?: string | readonly string[];
  /** Refuse this recipient at RCPT TO with 451 (try later) whatever the mode. */
  readonly deferRecipient?: string;
  /** Refuse MAIL FROM:<> (a null reverse-path, as bounces use) with 550. */
  readonly refuseNullSender?: boolean;
  /** drop-mid-data: bytes of data to receive before dropping the connection. @default 1 */
  readonly dropAfterBytes?: number;
  /** Offer STARTTLS with this certificate pair (or implicit TLS with `implicitTls`). */
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  /** Speak TLS from the first byte (needs `tls`). */
  readonly implicitTls?: boolean;
  /** Require AUTH with these credentials. */
  readonly auth?: { readonly user: string; readonly pass: string };
  /** Queue id in the 250 reply. @default 'TESTQ<n>' */
  readonly queueId?: (n: number) => string;
  /** Which extensions the EHLO hides (smtp-server offers 8BITMIME and SMTPUTF8, hides DSN by default). */
  readonly ehlo?: Pick<SMTPServerOptions, 'hide8BITMIME' | 'hideSMTPUTF8' | 'hideDSN'>;
}

export interface ReceivedMessage {
  readonly from: string;
  readonly to: string[];
  readonly raw: Buffer;
  readonly secure: boolean;
  readonly user?: string;
  /** The MAIL FROM parameters, and each recipient's RCPT TO parameters (xtext decoded), as received. */
  readonly mailArgs: Record<string, string | true>;
  readonly rcptArgs: Array<Record<string, string | true>>;
}

export interface DataAttempt {
  readonly from: string;
  readonly to: string[];
  /** Bytes received so far. */
  bytes: number;
  /** The final dot arrived. */
  completed: boolean;
  /** The connection closed before the final dot. */
  cutOff: boolean;
}

export interface TestUpstream {
  readonly port: number;
  /** Messages whose final dot arrived and that were accepted with 250. */
  readonly messages: ReceivedMessage[];
  /** Every DATA phase that started, complete or not. */
  readonly attempts: DataAttempt[];
  /** MAIL FROM commands seen. */
  readonly mailFroms: string[];
  /** Connections accepted so far. */
  readonly connections: number;
  /** Drops every open connection (a smarthost closing idle pooled connections). */
  dropConnections(): void;
  /** Resolves once `count` DATA attempts ended (completed or cut off). */
  waitForAttempts(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startTestUpstream(options: TestUpstreamOptions = {}): Promise<TestUpstream> {
  const mode = options.mode ?? 'accept';
  const rejectAt = options.rejectAt ?? 'data';
  const messages: ReceivedMessage[] = [];
  const attempts: DataAttempt[] = [];
  const mailFroms: string[] = [];
  const waiters = new Set<() => void>();
  let connections = 0;
  let accepted = 0;
  const notify = () => waiters.forEach((waiter) => waiter());

  const refusal = () =>
    mode === 'reject4xx'
      ? Object.assign(new Error('4.3.0 Test upstream says try again later'), { responseCode: 451 })
      : Object.assign(new Error('5.7.1 Test upstream refuses this message'), { responseCode: 554 });
  const refusesAt = (stage: 'mail' | 'rcpt' | 'data') => (mode === 'reject4xx' || mode === 'reject5xx') && rejectAt === stage;

  const server: SMTPServer = new SMTPServer({
    name: 'test-upstream.localhost',
    logger: false,
    disableReverseLookup: true,
    ...options.ehlo,
    ...(options.tls
      ? { key: options.tls.key, cert: options.tls.cert, secure: options.implicitTls ?? false }
      : { hideSTARTTLS: true, disabledCommands: ['STARTTLS'] }),
    ...(options.auth ? { authMethods: ['PLAIN', 'LOGIN'], allowInsecureAuth: true } : { authOptional: true }),
    onConnect(_session, callback) {
      connections++;
      callback();
    },
    onAuth(auth, _session, callback) {
      if (options.auth && auth.username === options.auth.user && auth.password === options.auth.pass) {
        return callback(null, { user: auth.username });
      }
      callback(Object.assign(new Error('5.7.8 Bad credentials'), { responseCode: 535 }));
    },
    onMailFrom(address, session, callback) {
      if (options.maxMessagesPerConnection !== undefined && (session.transaction ?? 1) > options.maxMessagesPerConnection) {
        return callback(Object.assign(new Error('4.4.2 Idle connection closed, reconnect'), { responseCode: 421 }));
      }
      mailFroms.push(address.address);
      if (options.refuseNullSender && !address.address) {
        return callback(Object.assign(new Error('5.7.1 Test upstream: null sender not allowed'), { responseCode: 550 }));
      }
      callback(refusesAt('mail') ? refusal() : null);
    },
    onRcptTo(address, _session, callback) {
      if ([options.rejectRecipient ?? []].flat().includes(address.address)) {
        return callback(Object.assign(new Error('5.1.1 Test upstream: no such user'), { responseCode: 550 }));
      }
      if (address.address === options.deferRecipient) {
        return callback(Object.assign(new Error('4.2.1 Test upstream: mailbox busy, try later'), { responseCode: 451 }));
      }
      callback(refusesAt('rcpt') ? refusal() : null);
    },
    onData(stream, session, callback) {
      const attempt: DataAttempt = {
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
        bytes: 0,
        completed: false,
        cutOff: false,
      };
      attempts.push(attempt);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        attempt.bytes += chunk.length;
        chunks.push(chunk);
        if (mode === 'drop-mid-data' && attempt.bytes >= (options.dropAfterBytes ?? 1)) socketOf(server, session)?.destroy();
      });
      stream.on('error', () => undefined);
      stream.on('close', () => {
        if (!attempt.completed) {
          attempt.cutOff = true;
          notify();
        }
      });
      stream.on('end', () => {
        attempt.completed = true;
        notify();
        if (mode === 'stall') return; // never answer the dot
        if (refusesAt('data')) return callback(refusal());
        setTimeout(() => accept(), options.replyDelayMs ?? 0);
      });
      const accept = () => {
        messages.push({
          from: attempt.from,
          to: attempt.to,
          raw: Buffer.concat(chunks),
          secure: session.secure,
          user: session.user as string | undefined,
          mailArgs: (session.envelope.mailFrom && session.envelope.mailFrom.args) || {},
          rcptArgs: session.envelope.rcptTo.map((rcpt) => rcpt.args || {}),
        });
        accepted++;
        callback(null, `Ok: queued as ${options.queueId ? options.queueId(accepted) : `TESTQ${accepted}`}`);
      };
    },
  } satisfies SMTPServerOptions);
  server.on('error', () => undefined);

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;

  return {
    port,
    messages,
    attempts,
    mailFroms,
    get connections() {
      return connections;
    },
    dropConnections() {
      for (const connection of server.connections) socketOf(server, connection.session)?.destroy();
    },
    waitForAttempts(count, timeoutMs = 10_000) {
      const ended = () => attempts.filter((attempt) => attempt.completed || attempt.cutOff).length >= count;
      if (ended()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!ended()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`test upstream: ${count} DATA attempts did not end within ${timeoutMs} ms (${attempts.length} started)`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        for (const connection of server.connections) socketOf(server, connection.session)?.destroy();
        server.close(() => resolve());
      });
    },
  };
}

/** The socket under a session; smtp-server does not expose it, and drop-mid-data needs to cut it. */
function socketOf(server: SMTPServer, session: SMTPServerSession): { destroy(): void } | undefined {
  for (const connection of server.connections) {
    if (connection.session === session || connection.session.id === session.id) {
      return (connection as unknown as { _socket: { destroy(): void } })._socket;
    }
  }
  return undefined;
}
