/**
 * The deadlines of one inbound SMTP session, so that no client holds a
 * connection slot for free. Each is a deadline, not an idle timer: bytes a
 * client trickles in never extend one (except in DATA, by the minimum rate).
 * Times the gateway spends working on a command (AUTH, relaying a message) are
 * the gateway's, not the client's: the per-command and DATA deadlines do not run
 * then, and the whole-session ones that fall due wait for the reply.
 */
import type { GatewayConfig } from '../config/schema';
import type { DeadlineName } from '../ops/metrics';

export type DeadlineSettings = GatewayConfig['deadlines'];

/** What the deadlines read of the DATA stream smtp-server hands to onData. */
export interface DataProgress {
  /** Bytes received so far (smtp-server keeps it current during the transfer). */
  readonly byteLength?: number;
  /** True once the final dot arrived. */
  readonly writableEnded: boolean;
}

type State = 'waiting' | 'working' | 'data' | 'closed';

export class SessionDeadlines {
  private state: State = 'waiting';
  private commands = 0;
  private commandTimer?: NodeJS.Timeout;
  private dataTimer?: NodeJS.Timeout;
  private authOrMailTimer?: NodeJS.Timeout;
  private readonly sessionTimer: NodeJS.Timeout;
  /** A whole-session deadline that fell due while the gateway was working: enforced after its reply. */
  private due?: DeadlineName;
  private data?: { readonly stream: DataProgress; readonly started: number };

  constructor(
    private readonly settings: DeadlineSettings,
    private readonly onExpire: (deadline: DeadlineName) => void,
  ) {
    this.commandTimer = this.arm('first_command', settings.firstCommandSeconds * 1000);
    this.authOrMailTimer = setTimeout(() => this.fallDue('auth_or_mail'), settings.authOrMailSeconds * 1000).unref();
    this.sessionTimer = setTimeout(() => this.fallDue('session'), settings.sessionMaxSeconds * 1000).unref();
  }

  /** A complete command line arrived. */
  command(): void {
    if (this.state === 'closed') return;
    if (++this.commands > this.settings.maxCommands) return this.expire('commands');
    clearTimeout(this.commandTimer);
    this.state = 'working';
  }

  /** The gateway answered a command and waits for the next (after STARTTLS: for the handshake and the next). */
  ready(): void {
    // DATA's own reply (354) comes after the transfer started
    if (this.state === 'closed' || this.state === 'data') return;
    this.waitForCommand();
  }

  /** A successful AUTH or an accepted MAIL FROM: the client is doing something useful. */
  established(): void {
    clearTimeout(this.authOrMailTimer);
  }

  /** The 354 is out and the message is coming. */
  dataStarted(stream: DataProgress): void {
    if (this.state === 'closed') return;
    clearTimeout(this.commandTimer);
    this.state = 'data';
    this.data = { stream, started: performance.now() };
    this.checkData();
  }

  /** The message was answered (its final reply is written once the dot is in). */
  dataAnswered(): void {
    if (this.state === 'closed') return;
    clearTimeout(this.dataTimer);
    this.data = undefined;
    this.waitForCommand();
  }

  /** The session ended: no deadline may fire any more. */
  close(): void {
    this.state = 'closed';
    for (const timer of [this.commandTimer, this.dataTimer, this.authOrMailTimer, this.sessionTimer]) clearTimeout(timer);
  }

  private waitForCommand(): void {
    this.state = 'waiting';
    if (this.due) return this.expire(this.due);
    clearTimeout(this.commandTimer);
    this.commandTimer = this.arm('command', this.settings.commandSeconds * 1000);
  }

  /**
   * Like Postfix's smtpd_min_data_rate: DATA may take dataGraceSeconds plus one
   * second per dataMinBytesPerSecond bytes received, and never more than dataMaxSeconds.
   */
  private checkData(): void {
    const data = this.data;
    if (!data || this.state !== 'data') return;
    if (data.stream.writableEnded) {
      // the dot is in; the gateway relays now
      this.state = 'working';
      return;
    }
    const elapsed = (performance.now() - data.started) / 1000;
    const { dataGraceSeconds, dataMinBytesPerSecond, dataMaxSeconds } = this.settings;
    if (elapsed >= dataMaxSeconds) return this.expire('data_total');
    const allowed = dataGraceSeconds + (data.stream.byteLength ?? 0) / dataMinBytesPerSecond;
    if (elapsed >= allowed) return this.expire('data_rate');
    const next = Math.min(allowed, dataMaxSeconds) - elapsed;
    this.dataTimer = setTimeout(() => this.checkData(), Math.max(10, next * 1000)).unref();
  }

  private fallDue(deadline: DeadlineName): void {
    if (this.state === 'closed') return;
    const working = this.state === 'working' || (this.state === 'data' && this.data?.stream.writableEnded);
    if (working) this.due ??= deadline;
    else this.expire(deadline);
  }

  private arm(deadline: DeadlineName, ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      if (this.state === 'waiting') this.expire(deadline);
    }, ms).unref();
  }

  private expire(deadline: DeadlineName): void {
    if (this.state === 'closed') return;
    this.close();
    this.onExpire(deadline);
  }
}
