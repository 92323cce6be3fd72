/**
 * The load generator: C concurrent SMTP connections, each sending messages of
 * size S one after another, bounded by a message count and a duration. Every
 * message gets a unique id; every outcome (the final reply, or none) is kept
 * so the checker can hold it against what the upstream received.
 */
import { performance } from 'node:perf_hooks';
import { bodyForTotal, makeHead } from '../../testkit/test-message';
import { ConnectionClosedError, ReplyTimeoutError, SmtpConnection, type SmtpReply, openSession } from '../../testkit/smtp-client';

/** Where a transaction ended. */
export type Stage = 'mail' | 'rcpt' | 'data' | 'body' | 'dot';

export interface Outcome {
  readonly id: string;
  /** The reply code that ended the transaction; 0 when none came. */
  readonly code: number;
  readonly stage: Stage;
  /** MAIL FROM sent → final reply received. */
  readonly latencyMs: number;
  /** Set when the client dropped the connection on purpose (fault injection). */
  readonly abandoned?: 'before-dot' | 'after-dot';
  /** Why no reply came (connection closed, timeout). */
  readonly error?: string;
  /** The text of the final reply. */
  readonly text?: string;
}

export interface Target {
  readonly host: string;
  readonly port: number;
}

export interface LoadOptions {
  /** Where each new connection goes; called per connection so a test can move traffic (rolling update). */
  readonly target: () => Target;
  /** Concurrent connections (C). */
  readonly concurrency: number;
  /** Message size in bytes, headers included (S). */
  readonly messageBytes: number;
  /** Stop after this many transactions in total. @default Infinity */
  readonly maxMessages?: number;
  /** Stop starting transactions after this long. @default 10000 */
  readonly durationMs?: number;
  /** Source addresses, used round-robin per connection. @default ['127.0.0.1'] */
  readonly localAddresses?: readonly string[];
  /** Pipeline MAIL, RCPT and DATA when the server offers PIPELINING. @default true */
  readonly pipelining?: boolean;
  /** Pause between one connection's messages (a low-rate sender). @default 0 */
  readonly intervalMs?: number;
  /** Open every connection before the first message is sent (measures C open sessions). @default false */
  readonly openAllFirst?: boolean;
  /** Spread the initial connects over this long, so a listen backlog is not flooded. @default 0 */
  readonly rampMs?: number;
  /** Probability per message that the client vanishes at a random point (fault injection). @default 0 */
  readonly disconnectRate?: number;
  /** Give up waiting for one reply after this long. @default 120000 */
  readonly replyTimeoutMs?: number;
  /** Recipients per message: `to` itself, or local+0@domain … local+N-1@domain. @default 1 */
  readonly recipients?: number;
  /** Prefix of every message id, unique per run. */
  readonly runId: string;
  readonly from?: string;
  readonly to?: string;
  /**
   * Open loop: messages arrive at this mean rate (per second, Poisson) over the C connections, each taken by
   * the first idle one; latency counts from the arrival, so time spent queued for a connection shows.
   * @default undefined (closed loop: each connection sends its next message as soon as the last is answered)
   */
  readonly arrivalRate?: number;
  /** Seeded randomness for fault points and arrival times. @default Math.random */
  readonly random?: () => number;
}

export interface LoadResult {
  readonly outcomes: Outcome[];
  /** First MAIL FROM → last final reply. */
  readonly elapsedMs: number;
  /** Connection attempts that failed or were refused at the greeting. */
  readonly connectFailures: number;
  /** Greeting or EHLO replies other than 2xx, by code. */
  readonly refusedSessions: Record<number, number>;
  /** Most connections that were open at once. */
  readonly maxOpen: number;
}

const ABANDON_POINTS: readonly Stage[] = ['mail', 'rcpt', 'data', 'body', 'dot'];

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const maxMessages = options.maxMessages ?? Number.POSITIVE_INFINITY;
  const durationMs = options.durationMs ?? 10_000;
  const localAddresses = options.localAddresses ?? ['127.0.0.1'];
  const random = options.random ?? Math.random;
  const from = options.from ?? 'bench@bench.test';
  const to = options.to ?? 'sink@sink.test';
  const body = bodyForTotal(options.messageBytes);
  const [toLocal, toDomain] = to.split('@');
  const rcptTo = (options.recipients ?? 1) === 1 ? [to] : Array.from({ length: options.recipients ?? 1 }, (_, r) => `${toLocal}+${r}@${toDomain}`);
  const replyTimeoutMs = options.replyTimeoutMs ?? 120_000;

  const outcomes: Outcome[] = [];
  const refusedSessions: Record<number, number> = {};
  let started = 0;
  let connectFailures = 0;
  let open = 0;
  let maxOpen = 0;
  let firstStart = Number.POSITIVE_INFINITY;
  let lastEnd = 0;
  let deadline = Number.POSITIVE_INFINITY;

  let releaseBarrier: () => void = () => undefined;
  const barrier = new Promise<void>((resolve) => (releaseBarrier = resolve));
  let waitingAtBarrier = 0;
  const arriveAtBarrier = () => {
    waitingAtBarrier += 1;
    if (waitingAtBarrier >= options.concurrency) releaseBarrier();
  };
  if (!options.openAllFirst) releaseBarrier();

  const more = () => started < maxMessages && performance.now() < deadline;

  async function connect(index: number): Promise<{ connection: SmtpConnection; pipelining: boolean } | undefined> {
    const target = options.target();
    let connection: SmtpConnection | undefined;
    try {
      connection = await SmtpConnection.connect({ ...target, localAddress: localAddresses[index % localAddresses.length] });
      const session = await openSession(connection, 'bench.client.test', replyTimeoutMs);
      if (!session.ok) {
        refusedSessions[session.reply.code] = (refusedSessions[session.reply.code] ?? 0) + 1;
        connectFailures += 1;
        connection.destroy();
        return undefined;
      }
      open += 1;
      maxOpen = Math.max(maxOpen, open);
      connection.socket.once('close', () => (open -= 1));
      return { connection, pipelining: (options.pipelining ?? true) && session.extensions.has('PIPELINING') };
    } catch {
      connectFailures += 1;
      connection?.destroy();
      return undefined;
    }
  }

  async function transaction(connection: SmtpConnection, pipelining: boolean, id: string, arrivedAt?: number): Promise<Outcome> {
    const abandonAt = random() < (options.disconnectRate ?? 0) ? ABANDON_POINTS[Math.floor(random() * ABANDON_POINTS.length)] : undefined;
    const head = makeHead(id, from, to);
    const size = head.length + body.length;
    const t0 = arrivedAt ?? performance.now();
    firstStart = Math.min(firstStart, t0);
    let stage: Stage = 'mail';
    const done = (reply: SmtpReply | undefined, extra: Partial<Outcome> = {}): Outcome => {
      const end = performance.now();
      lastEnd = Math.max(lastEnd, end);
      return { id, code: reply?.code ?? 0, stage, latencyMs: end - t0, text: reply?.lines.join(' '), ...extra };
    };
    const abandon = (): Outcome => {
      connection.destroy();
      return done(undefined, { abandoned: stage === 'dot' ? 'after-dot' : 'before-dot' });
    };
    const mailCommand = `MAIL FROM:<${from}> SIZE=${size}\r\n`;
    const rcptCommand = rcptTo.map((address) => `RCPT TO:<${address}>\r\n`).join('');
    // Several recipients: the transaction goes on if the server took any of them.
    const readRcptReplies = async (first: SmtpReply, read: (previous: SmtpReply) => Promise<SmtpReply | undefined>) => {
      const replies: SmtpReply[] = [];
      let previous = first;
      for (let r = 0; r < rcptTo.length; r += 1) {
        const reply = await read(previous);
        if (!reply) break;
        replies.push(reply);
        previous = reply;
      }
      return { summary: replies.find((reply) => reply.code === 250 || reply.code === 251) ?? replies.at(-1), last: previous, complete: replies.length === rcptTo.length };
    };
    try {
      let mail: SmtpReply;
      let rcpt: SmtpReply | undefined;
      let data: SmtpReply | undefined;
      if (pipelining && !abandonAt) {
        connection.write(mailCommand + rcptCommand + 'DATA\r\n');
        mail = await connection.reply(replyTimeoutMs);
        // A server that refuses MAIL with 421 closes at once: RCPT and DATA never get replies.
        const next = (previous: SmtpReply) =>
          connection.reply(replyTimeoutMs).catch((error: Error) => {
            if (previous.code >= 400 && error instanceof ConnectionClosedError) return undefined;
            throw error;
          });
        const rcpts = await readRcptReplies(mail, next);
        rcpt = rcpts.summary;
        data = rcpts.complete ? await next(rcpts.last) : undefined;
      } else {
        connection.write(mailCommand);
        if (abandonAt === 'mail') return abandon();
        mail = await connection.reply(replyTimeoutMs);
      }
      if (mail.code !== 250) return await endRefused(connection, done(mail), data);
      stage = 'rcpt';
      if (!rcpt) {
        connection.write(rcptCommand);
        if (abandonAt === 'rcpt') return abandon();
        rcpt = (await readRcptReplies(mail, () => connection.reply(replyTimeoutMs))).summary!;
      }
      if (rcpt.code !== 250 && rcpt.code !== 251) return await endRefused(connection, done(rcpt), data);
      stage = 'data';
      if (!data) {
        connection.write('DATA\r\n');
        if (abandonAt === 'data') return abandon();
        data = await connection.reply(replyTimeoutMs);
      }
      if (data.code !== 354) return done(data);
      stage = 'body';
      if (abandonAt === 'body') {
        // Half the message, then vanish: nothing of it may be delivered.
        connection.write(Buffer.concat([head, body]).subarray(0, Math.floor(size / 2)));
        return abandon();
      }
      connection.socket.cork();
      connection.write(head);
      connection.write(body);
      connection.write('.\r\n');
      connection.socket.uncork();
      stage = 'dot';
      if (abandonAt === 'dot') return abandon();
      return done(await connection.reply(replyTimeoutMs));
    } catch (error) {
      if (error instanceof ConnectionClosedError || error instanceof ReplyTimeoutError) {
        connection.destroy();
        return done(undefined, { error: error.message });
      }
      throw error;
    }
  }

  const arrivals = options.arrivalRate ? new ArrivalQueue() : undefined;

  async function worker(index: number): Promise<void> {
    if (options.rampMs) await sleep((options.rampMs * index) / options.concurrency);
    let current = await connect(index);
    while (!current && more()) {
      await sleep(50);
      current = await connect(index);
    }
    if (options.openAllFirst || arrivals) {
      arriveAtBarrier();
      await barrier;
    }
    for (let arrivedAt = await arrivals?.next(); arrivals && arrivedAt !== undefined; arrivedAt = await arrivals.next()) {
      if (!current || current.connection.closed) current = await connect(index);
      started += 1;
      const id = `${options.runId}-${index}-${started}`;
      if (!current) outcomes.push({ id, code: 0, stage: 'mail', latencyMs: performance.now() - arrivedAt, error: 'could not connect' });
      else outcomes.push(await transaction(current.connection, current.pipelining, id, arrivedAt));
    }
    while (!arrivals && more()) {
      if (!current || current.connection.closed) {
        current = await connect(index);
        if (!current) {
          await sleep(50);
          continue;
        }
        if (!more()) break;
      }
      started += 1;
      const outcome = await transaction(current.connection, current.pipelining, `${options.runId}-${index}-${started}`);
      outcomes.push(outcome);
      if (options.intervalMs && more()) await sleep(options.intervalMs);
    }
    await current?.connection.quit();
  }

  const workers = Array.from({ length: options.concurrency }, (_, index) => worker(index));
  if (options.openAllFirst || arrivals) {
    // The clock starts when every connection is open (or the connects have had their chance).
    const connectDeadline = performance.now() + Math.max(30_000, (options.rampMs ?? 0) * 2);
    deadline = connectDeadline;
    const opened = await Promise.race([barrier.then(() => true), sleep(connectDeadline - performance.now()).then(() => false)]);
    if (!opened) releaseBarrier();
  }
  deadline = performance.now() + durationMs;
  if (arrivals) await dispatchArrivals(arrivals, options.arrivalRate!, maxMessages, deadline, random);
  await Promise.all(workers);
  return {
    outcomes,
    elapsedMs: lastEnd > firstStart ? lastEnd - firstStart : 0,
    connectFailures,
    refusedSessions,
    maxOpen,
  };
}

/** After a refused MAIL or RCPT: end a DATA the server wrongly accepted, then RSET (if the server is still there). */
async function endRefused(connection: SmtpConnection, outcome: Outcome, data: SmtpReply | undefined): Promise<Outcome> {
  try {
    if (data?.code === 354) {
      connection.write('.\r\n');
      await connection.reply();
    }
    if (!connection.closed) await connection.command('RSET');
  } catch (error) {
    if (!(error instanceof ConnectionClosedError || error instanceof ReplyTimeoutError)) throw error;
    connection.destroy();
  }
  return outcome;
}

/** Arrival times waiting for an idle connection, first come first served. */
class ArrivalQueue {
  private readonly times: number[] = [];
  private readonly idle: Array<(time: number | undefined) => void> = [];
  private closed = false;

  push(time: number): void {
    const take = this.idle.shift();
    if (take) take(time);
    else this.times.push(time);
  }

  /** The next arrival, or undefined once the queue is closed and empty. */
  next(): Promise<number | undefined> {
    if (this.times.length) return Promise.resolve(this.times.shift());
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.idle.push(resolve));
  }

  close(): void {
    this.closed = true;
    for (const take of this.idle.splice(0)) take(undefined);
  }
}

/** Poisson arrivals at `rate` per second until the deadline or `max` arrivals, then closes the queue. */
async function dispatchArrivals(queue: ArrivalQueue, rate: number, max: number, deadline: number, random: () => number): Promise<void> {
  let at = performance.now();
  for (let count = 0; count < max; count += 1) {
    at += (-Math.log(1 - random()) * 1000) / rate;
    if (at >= deadline) break;
    const wait = at - performance.now();
    if (wait > 1) await sleep(wait);
    queue.push(at);
  }
  queue.close();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
