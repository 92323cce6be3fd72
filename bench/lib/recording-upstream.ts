/**
 * A recording upstream for the fault suites: an smtp-server that records the
 * id of every message it answered 250 to (and only those), and can misbehave
 * on a fraction of messages: answer 421/451, drop the connection in the middle
 * of DATA, or stall (read the message and never answer). It runs in the test's
 * process, or as its own process (upstream-process.ts) when a test must kill it.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { findId } from './message';

export interface UpstreamBehaviour {
  /** Fraction of messages answered with a temporary error at the dot. @default 0 */
  readonly tempFailRate?: number;
  /** Code used for those: 421 (and close) or 451. @default 451 */
  readonly tempFailCode?: 421 | 451;
  /** Fraction of messages whose connection is cut right after DATA's 354, mid-transfer. @default 0 */
  readonly dropRate?: number;
  /** Fraction of messages read to the dot and never answered. @default 0 */
  readonly stallRate?: number;
  /** Fraction of messages answered 554 (permanent). @default 0 */
  readonly permFailRate?: number;
  /** Fraction of new connections accepted and never greeted. @default 0 */
  readonly stallGreetingRate?: number;
  /**
   * Fraction of messages read to the dot, kept (as `unanswered`), and then the
   * connection is cut instead of answering: the fate the sender cannot know.
   * A sender that retries such a message delivers it twice. @default 0
   */
  readonly dropAfterDotRate?: number;
  /** Fraction of RCPT commands answered 451 (a recipient deferred, the others taken). @default 0 */
  readonly rcptTempFailRate?: number;
  /** Fraction of messages answered as SES answers a rate overrun: "454 4.7.0 Throttling failure: Maximum sending rate exceeded.". @default 0 */
  readonly throttleRate?: number;
}

export interface RecordingUpstreamOptions extends UpstreamBehaviour {
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** @default 0 (ephemeral) */
  readonly port?: number;
  /** Also append each delivered id to this file (survives the process being killed). */
  readonly recordFile?: string;
  /** Offer STARTTLS with this certificate pair, as a smarthost does. @default none (no STARTTLS) */
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  /** Require AUTH (PLAIN, LOGIN) with these credentials, as SES does. @default none (no AUTH) */
  readonly auth?: { readonly user: string; readonly pass: string };
  /** @default Math.random */
  readonly random?: () => number;
}

export interface RecordingUpstream {
  readonly host: string;
  readonly port: number;
  /** Times each id was answered 250. */
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
   * then transactions that reached DATA, by what was done with them.
   */
  readonly counts: { connections: number; transactions: number; accepted: number; tempFailed: number; permFailed: number; dropped: number; stalled: number; ungreeted: number; droppedAfterDot: number; rcptDeferred: number; throttled: number };
  /** Changes how the next messages are treated. */
  setBehaviour(behaviour: UpstreamBehaviour): void;
  close(): Promise<void>;
}

export async function startRecordingUpstream(options: RecordingUpstreamOptions = {}): Promise<RecordingUpstream> {
  let behaviour: UpstreamBehaviour = { ...options };
  const random = options.random ?? Math.random;
  const deliveries = new Map<string, number>();
  const unanswered = new Map<string, number>();
  const recipients = new Map<string, Set<string>>();
  const heads = new Map<string, string>();
  const counts = { connections: 0, transactions: 0, accepted: 0, tempFailed: 0, permFailed: 0, dropped: 0, stalled: 0, ungreeted: 0, droppedAfterDot: 0, rcptDeferred: 0, throttled: 0 };
  const deliveredAt: number[] = [];
  let sequence = 0;

  const server: SMTPServer = new SMTPServer({
    logger: false,
    // A reverse lookup would send DNS queries off this machine; the tests talk to loopback and their own addresses only.
    disableReverseLookup: true,
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    ...(options.auth ? { authMethods: ['PLAIN', 'LOGIN'] } : { authOptional: true }),
    disabledCommands: [...(options.auth ? [] : ['AUTH']), ...(options.tls ? [] : ['STARTTLS'])],
    onAuth(auth, _session, callback) {
      if (options.auth && auth.username === options.auth.user && auth.password === options.auth.pass) return callback(null, { user: auth.username });
      callback(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
    },
    size: 64 * 1024 * 1024,
    // Stalled transactions must not hold the server's close() for its default 30 s.
    closeTimeout: 500,
    onMailFrom(_address, _session, callback) {
      counts.transactions += 1;
      callback();
    },
    onRcptTo(_address, _session, callback) {
      if (random() < (behaviour.rcptTempFailRate ?? 0)) {
        counts.rcptDeferred += 1;
        return callback(Object.assign(new Error('4.2.1 Mailbox busy, try again later'), { responseCode: 451 }));
      }
      callback();
    },
    onConnect(_session, callback) {
      counts.connections += 1;
      // The greeting goes out when this calls back; a stalled upstream never does.
      if (random() < (behaviour.stallGreetingRate ?? 0)) counts.ungreeted += 1;
      else callback();
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (error?: Error | null, message?: string) => void) {
      const roll = random();
      const { tempFailRate = 0, dropRate = 0, stallRate = 0, permFailRate = 0, dropAfterDotRate = 0 } = behaviour;
      if (roll < dropRate) {
        counts.dropped += 1;
        stream.resume();
        dropConnection(server, session.id);
        return;
      }
      let head = '';
      stream.on('data', (chunk: Buffer) => {
        if (head.length < 8192) head += chunk.toString('latin1');
      });
      stream.on('end', () => {
        if (roll < dropRate + stallRate) {
          counts.stalled += 1;
          return; // never answer
        }
        if (roll < dropRate + stallRate + tempFailRate) {
          counts.tempFailed += 1;
          const code = behaviour.tempFailCode ?? 451;
          return callback(Object.assign(new Error(`${code === 421 ? '4.3.2 Service shutting down' : '4.3.0 Try again later'}`), { responseCode: code }));
        }
        if (roll < dropRate + stallRate + tempFailRate + permFailRate) {
          counts.permFailed += 1;
          return callback(Object.assign(new Error('5.7.1 Message rejected'), { responseCode: 554 }));
        }
        if (random() < (behaviour.throttleRate ?? 0)) {
          counts.throttled += 1;
          return callback(Object.assign(new Error('4.7.0 Throttling failure: Maximum sending rate exceeded.'), { responseCode: 454 }));
        }
        const id = findId(head) ?? `no-id-${++sequence}`;
        if (roll < dropRate + stallRate + tempFailRate + permFailRate + dropAfterDotRate) {
          counts.droppedAfterDot += 1;
          unanswered.set(id, (unanswered.get(id) ?? 0) + 1);
          dropConnection(server, session.id);
          return;
        }
        // Recorded before the 250 is written: a kill between the two can only
        // ever show up as an unacknowledged delivery, never hide a lost one.
        deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
        deliveredAt.push(performance.now());
        if (!heads.has(id)) heads.set(id, head.split('\r\n\r\n')[0]);
        const taken = recipients.get(id) ?? new Set<string>();
        for (const rcpt of session.envelope.rcptTo) taken.add(rcpt.address);
        recipients.set(id, taken);
        if (options.recordFile) appendFileSync(options.recordFile, `${id}\n`);
        counts.accepted += 1;
        callback(null, `2.0.0 Ok: queued as ${id}`);
      });
    },
  });
  server.on('error', () => undefined); // a peer resetting is part of the game here
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    deliveries,
    deliveredAt,
    heads,
    unanswered,
    recipients,
    counts,
    setBehaviour(next) {
      behaviour = { ...next };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const connection of connectionsOf(server)) connection._socket?.destroy();
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

interface InternalConnection {
  id: string;
  _socket?: { destroy(): void };
}

// smtp-server gives onData no handle on the socket; its connection set is the only way to cut one.
function connectionsOf(server: SMTPServer): Set<InternalConnection> {
  return ((server as unknown as { connections?: Set<InternalConnection> }).connections ?? new Set()) as Set<InternalConnection>;
}

function dropConnection(server: SMTPServer, sessionId: string): void {
  for (const connection of connectionsOf(server)) {
    if (connection.id === sessionId) setImmediate(() => connection._socket?.destroy());
  }
}
