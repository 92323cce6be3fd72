/**
 * The recording upstream of the tests, fault suites and cluster test: a real
 * SMTP server (smtp-server) on a loopback port, or any address the test made,
 * that records what it answered 250 to — each message whole (`messages`) and
 * each bench id (`deliveries`, from the X-Bench-Id header) — and only that, and
 * every DATA phase that started (`attempts`), so a test can tell delivered from
 * cut off. It misbehaves on demand, for every message (a rate of 1) or for a
 * random fraction: refuse 4xx/5xx at MAIL, RCPT or the dot, stall, cut the
 * connection mid-DATA or after the dot, answer as SES does when throttled.
 * bench/upstream-process.ts runs it as its own process when a test must kill it.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { findId } from './test-message';

/** What the upstream does with what it receives; setBehaviour() changes it for the next messages. */
export interface UpstreamBehaviour {
  /** Fraction of messages refused with a temporary error (at `rejectAt`). @default 0 */
  readonly tempFailRate?: number;
  /** Code of those: 421 (service shutting down) or 451. @default 451 */
  readonly tempFailCode?: 421 | 451;
  /** Fraction of messages refused with 554 (at `rejectAt`). @default 0 */
  readonly permFailRate?: number;
  /** Where temporary and permanent refusals happen: at MAIL FROM, RCPT TO or after the data. @default 'data' */
  readonly rejectAt?: 'mail' | 'rcpt' | 'data';
  /** Fraction of messages whose connection is cut in the middle of the data. @default 0 */
  readonly dropRate?: number;
  /** Bytes of data a cut message gets through before the connection goes. @default 1 */
  readonly dropAfterBytes?: number;
  /** Fraction of messages read to the dot and never answered. @default 0 */
  readonly stallRate?: number;
  /**
   * Fraction of messages read to the dot, kept (as `unanswered`), and then the
   * connection is cut instead of answering: the fate the sender cannot know.
   * A sender that retries such a message delivers it twice. @default 0
   */
  readonly dropAfterDotRate?: number;
  /** Fraction of messages answered as SES answers a rate overrun: "454 4.7.0 Throttling failure: Maximum sending rate exceeded.". @default 0 */
  readonly throttleRate?: number;
  /** Fraction of RCPT commands answered 451 (a recipient deferred, the others taken). @default 0 */
  readonly rcptTempFailRate?: number;
  /** Fraction of new connections accepted and never greeted. @default 0 */
  readonly stallGreetingRate?: number;
  /** Wait this long after the final dot before accepting (a slow smarthost). @default 0 */
  readonly replyDelayMs?: number;
  /** Answer 421 at MAIL FROM once a connection has carried this many messages (an idle-closing smarthost). @default no limit */
  readonly maxMessagesPerConnection?: number;
  /** Refuse this recipient (or these) at RCPT TO with 550, whatever else. */
  readonly rejectRecipient?: string | readonly string[];
  /** Refuse this recipient at RCPT TO with 451 (try later), whatever else. */
  readonly deferRecipient?: string;
  /** Refuse MAIL FROM:<> (a null reverse-path, as bounces use) with 550. @default false */
  readonly refuseNullSender?: boolean;
}

export interface SmtpCredentials {
  readonly user: string;
  readonly pass: string;
}

export interface RecordingUpstreamOptions extends UpstreamBehaviour {
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** @default 0 (ephemeral) */
  readonly port?: number;
  /** Also append each delivered id to this file (survives the process being killed). */
  readonly recordFile?: string;
  /** Offer STARTTLS with this certificate pair, as a smarthost does (or implicit TLS with `implicitTls`). @default none */
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  /** Speak TLS from the first byte (needs `tls`). @default false */
  readonly implicitTls?: boolean;
  /**
   * Require AUTH (PLAIN, LOGIN) with these credentials (any of a list, read at every AUTH, so a test may change
   * them), as SES does; over plain text only when the upstream offers no TLS at all. @default none (no AUTH)
   */
  readonly auth?: SmtpCredentials | readonly SmtpCredentials[];
  /** Queue id in the 250 reply to the n-th accepted message. @default 'TESTQ<n>' */
  readonly queueId?: (n: number) => string;
  /** Which extensions the EHLO hides (smtp-server offers 8BITMIME and SMTPUTF8, hides DSN by default). */
  readonly ehlo?: Pick<SMTPServerOptions, 'hide8BITMIME' | 'hideSMTPUTF8' | 'hideDSN'>;
  /** @default Math.random */
  readonly random?: () => number;
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

export interface RecordingUpstream {
  readonly host: string;
  readonly port: number;
  /** Messages whose final dot arrived and that were answered 250, in order. */
  readonly messages: ReceivedMessage[];
  /** Every DATA phase that started, complete or not. */
  readonly attempts: DataAttempt[];
  /** MAIL FROM commands seen (addresses). */
  readonly mailFroms: string[];
  /** Times each bench id was answered 250. */
  readonly deliveries: Map<string, number>;
  /** performance.now() of every 250, in order (send rates over time windows). */
  readonly deliveredAt: number[];
  /** The header block (first 8 KiB) of each id's first delivery, to check what the gateway added. */
  readonly heads: Map<string, string>;
  /** Times each id was received whole but never answered (dropAfterDotRate). */
  readonly unanswered: Map<string, number>;
  /** Every recipient each id was answered 250 for, over all its deliveries. */
  readonly recipients: Map<string, Set<string>>;
  /**
   * Connections and MAIL FROM commands seen (every upstream transaction, whether it reached DATA or not);
   * then transactions by what was done with them.
   */
  readonly counts: { connections: number; transactions: number; accepted: number; tempFailed: number; permFailed: number; dropped: number; stalled: number; ungreeted: number; droppedAfterDot: number; rcptDeferred: number; throttled: number };
  /** Connections accepted so far. */
  readonly connections: number;
  /** Changes how the next messages are treated. */
  setBehaviour(behaviour: UpstreamBehaviour): void;
  /** Drops every open connection (a smarthost closing idle pooled connections). */
  dropConnections(): void;
  /** Resolves once `count` DATA attempts ended (completed or cut off). */
  waitForAttempts(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

type Refusal = 'temp' | 'perm' | undefined;

export async function startRecordingUpstream(options: RecordingUpstreamOptions = {}): Promise<RecordingUpstream> {
  let behaviour: UpstreamBehaviour = { ...options };
  const random = options.random ?? Math.random;
  const messages: ReceivedMessage[] = [];
  const attempts: DataAttempt[] = [];
  const mailFroms: string[] = [];
  const deliveries = new Map<string, number>();
  const unanswered = new Map<string, number>();
  const recipients = new Map<string, Set<string>>();
  const heads = new Map<string, string>();
  const counts = { connections: 0, transactions: 0, accepted: 0, tempFailed: 0, permFailed: 0, dropped: 0, stalled: 0, ungreeted: 0, droppedAfterDot: 0, rcptDeferred: 0, throttled: 0 };
  const deliveredAt: number[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((waiter) => waiter());
  let sequence = 0;

  /** The refusal a roll earns at `stage`, counted; at the dot the stall and drop fractions come first. */
  const refusalAt = (stage: 'mail' | 'rcpt' | 'data', roll: number): Refusal => {
    if ((behaviour.rejectAt ?? 'data') !== stage) return undefined;
    const { tempFailRate = 0, permFailRate = 0 } = behaviour;
    const before = stage === 'data' ? (behaviour.dropRate ?? 0) + (behaviour.stallRate ?? 0) : 0;
    if (roll >= before && roll < before + tempFailRate) return 'temp';
    if (roll >= before + tempFailRate && roll < before + tempFailRate + permFailRate) return 'perm';
    return undefined;
  };
  const refuse = (refusal: 'temp' | 'perm'): Error => {
    if (refusal === 'perm') {
      counts.permFailed += 1;
      return Object.assign(new Error('5.7.1 Test upstream refuses this message'), { responseCode: 554 });
    }
    counts.tempFailed += 1;
    const code = behaviour.tempFailCode ?? 451;
    return Object.assign(new Error(code === 421 ? '4.3.2 Test upstream is shutting down' : '4.3.0 Test upstream says try again later'), { responseCode: code });
  };

  const server: SMTPServer = new SMTPServer({
    name: 'test-upstream.localhost',
    logger: false,
    // A reverse lookup would send DNS queries off this machine; the tests talk to loopback and their own addresses only.
    disableReverseLookup: true,
    ...options.ehlo,
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert, secure: options.implicitTls ?? false } : { hideSTARTTLS: true }),
    ...(options.auth ? { authMethods: ['PLAIN', 'LOGIN'], allowInsecureAuth: !options.tls } : { authOptional: true }),
    disabledCommands: [...(options.auth ? [] : ['AUTH']), ...(options.tls ? [] : ['STARTTLS'])],
    size: 64 * 1024 * 1024,
    // Stalled transactions must not hold the server's close() for its default 30 s.
    closeTimeout: 500,
    onConnect(_session, callback) {
      counts.connections += 1;
      // The greeting goes out when this calls back; a stalled upstream never does.
      if (random() < (behaviour.stallGreetingRate ?? 0)) counts.ungreeted += 1;
      else callback();
    },
    onAuth(auth, _session, callback) {
      const valid = options.auth ? [options.auth].flat() : [];
      if (valid.some((credentials) => auth.username === credentials.user && auth.password === credentials.pass)) return callback(null, { user: auth.username });
      callback(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
    },
    onMailFrom(address, session, callback) {
      if (behaviour.maxMessagesPerConnection !== undefined && (session.transaction ?? 1) > behaviour.maxMessagesPerConnection) {
        return callback(Object.assign(new Error('4.4.2 Idle connection closed, reconnect'), { responseCode: 421 }));
      }
      counts.transactions += 1;
      mailFroms.push(address.address);
      if (behaviour.refuseNullSender && !address.address) {
        return callback(Object.assign(new Error('5.7.1 Test upstream: null sender not allowed'), { responseCode: 550 }));
      }
      const refusal = refusalAt('mail', random());
      callback(refusal ? refuse(refusal) : null);
    },
    onRcptTo(address, _session, callback) {
      if ([behaviour.rejectRecipient ?? []].flat().includes(address.address)) {
        return callback(Object.assign(new Error('5.1.1 Test upstream: no such user'), { responseCode: 550 }));
      }
      if (address.address === behaviour.deferRecipient || random() < (behaviour.rcptTempFailRate ?? 0)) {
        counts.rcptDeferred += 1;
        return callback(Object.assign(new Error('4.2.1 Test upstream: mailbox busy, try later'), { responseCode: 451 }));
      }
      const refusal = refusalAt('rcpt', random());
      callback(refusal ? refuse(refusal) : null);
    },
    onData(stream, session, callback) {
      const current = behaviour;
      const roll = random();
      const { dropRate = 0, stallRate = 0, tempFailRate = 0, permFailRate = 0, dropAfterDotRate = 0 } = current;
      const attempt: DataAttempt = {
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
        bytes: 0,
        completed: false,
        cutOff: false,
      };
      attempts.push(attempt);
      const dropping = roll < dropRate;
      if (dropping) counts.dropped += 1;
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        attempt.bytes += chunk.length;
        chunks.push(chunk);
        if (dropping && attempt.bytes >= (current.dropAfterBytes ?? 1)) dropConnection(server, session);
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
        if (dropping) return; // the connection is going; no reply
        if (roll < dropRate + stallRate) {
          counts.stalled += 1;
          return; // never answer the dot
        }
        const refusal = refusalAt('data', roll);
        if (refusal) return callback(refuse(refusal));
        if (random() < (current.throttleRate ?? 0)) {
          counts.throttled += 1;
          return callback(Object.assign(new Error('4.7.0 Throttling failure: Maximum sending rate exceeded.'), { responseCode: 454 }));
        }
        const raw = Buffer.concat(chunks);
        const head = raw.subarray(0, 8192).toString('latin1');
        const id = findId(head) ?? `no-id-${++sequence}`;
        if (roll < dropRate + stallRate + tempFailRate + permFailRate + dropAfterDotRate) {
          counts.droppedAfterDot += 1;
          unanswered.set(id, (unanswered.get(id) ?? 0) + 1);
          dropConnection(server, session);
          return;
        }
        // a timer only when asked for: its turn of the event loop would blur deliveredAt under load
        if (current.replyDelayMs) setTimeout(() => accept(raw, head, id), current.replyDelayMs);
        else accept(raw, head, id);
      });
      const accept = (raw: Buffer, head: string, id: string) => {
        // Recorded before the 250 is written: a kill between the two can only
        // ever show up as an unacknowledged delivery, never hide a lost one.
        messages.push({
          from: attempt.from,
          to: attempt.to,
          raw,
          secure: session.secure,
          user: session.user as string | undefined,
          mailArgs: (session.envelope.mailFrom && session.envelope.mailFrom.args) || {},
          rcptArgs: session.envelope.rcptTo.map((rcpt) => rcpt.args || {}),
        });
        deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
        deliveredAt.push(performance.now());
        if (!heads.has(id)) heads.set(id, head.split('\r\n\r\n')[0]);
        const taken = recipients.get(id) ?? new Set<string>();
        for (const rcpt of attempt.to) taken.add(rcpt);
        recipients.set(id, taken);
        if (options.recordFile) appendFileSync(options.recordFile, `${id}\n`);
        counts.accepted += 1;
        callback(null, `Ok: queued as ${options.queueId ? options.queueId(counts.accepted) : `TESTQ${counts.accepted}`}`);
      };
    },
  } satisfies SMTPServerOptions);
  server.on('error', () => undefined); // a peer resetting is part of the game here

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    messages,
    attempts,
    mailFroms,
    deliveries,
    deliveredAt,
    heads,
    unanswered,
    recipients,
    counts,
    get connections() {
      return counts.connections;
    },
    setBehaviour(next) {
      behaviour = { ...next };
    },
    dropConnections() {
      for (const connection of server.connections) dropConnection(server, connection.session);
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
          reject(new Error(`recording upstream: ${count} DATA attempts did not end within ${timeoutMs} ms (${attempts.length} started)`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const connection of server.connections) socketOf(connection)?.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Counts of ids in a record file written by `recordFile`. */
export function readRecordFile(file: string): Map<string, number> {
  const counts = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return counts;
  }
  for (const id of text.split('\n')) if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

interface Connection {
  readonly session: SMTPServerSession;
}

// smtp-server gives onData no handle on the socket; its connection's private _socket is the only way to cut one.
function socketOf(connection: Connection): { destroy(): void } | undefined {
  return (connection as unknown as { _socket?: { destroy(): void } })._socket;
}

function dropConnection(server: SMTPServer, session: SMTPServerSession): void {
  for (const connection of server.connections) {
    if (connection.session === session || connection.session.id === session.id) setImmediate(() => socketOf(connection)?.destroy());
  }
}
