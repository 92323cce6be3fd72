/**
 * The rate this pod's send slots run at: its share of the account's maximum
 * send rate (accountMaxSendRate / ready pods), capped by messagesPerSecond,
 * times a throttle factor. A throttling reply from the upstream (SES's
 * "454 Throttling failure", or TooManyRequests through the API) halves the
 * factor at once; it then grows back linearly to 1 over recoverySeconds, so a
 * pod that overran finds the rate SES allows again without hammering it.
 */
import type { Upstream, UpstreamError } from './upstream';

export interface SendRateOptions {
  /** The account's maximum send rate shared by every pod; 0: no shared rate. */
  readonly accountMaxSendRate: number;
  /** This pod's own cap; 0: none. */
  readonly messagesPerSecond: number;
  /** Seconds the throttle factor takes to grow from 0 back to 1. */
  readonly recoverySeconds: number;
  /** Ready gateway pods at start. */
  readonly peers: number;
  /** Called with every new rate (messages per second, 0: unlimited). */
  readonly apply: (perSecond: number) => void;
}

/** The factor never drops below this: a pod keeps probing, so it notices when SES lets it send again. */
const MIN_FACTOR = 1 / 16;
/** Throttling replies to messages already in flight when the first came are one signal, not several. */
const CUT_INTERVAL_MS = 1000;
const RECOVERY_TICK_MS = 1000;

export class SendRate {
  private peerCount: number;
  private factor = 1;
  private cutAt = -Infinity;
  private recovery: NodeJS.Timeout | undefined;

  constructor(private readonly options: SendRateOptions) {
    this.peerCount = options.peers;
    options.apply(this.current);
  }

  /** Messages per second this pod may send now (0: unlimited). */
  get current(): number {
    const { accountMaxSendRate, messagesPerSecond } = this.options;
    const share = accountMaxSendRate > 0 ? accountMaxSendRate / this.peerCount : 0;
    const base = share > 0 && messagesPerSecond > 0 ? Math.min(share, messagesPerSecond) : share || messagesPerSecond;
    return base * this.factor;
  }

  get peers(): number {
    return this.peerCount;
  }

  /** The ready pods changed. */
  setPeers(peers: number): void {
    this.peerCount = Math.max(1, peers);
    this.options.apply(this.current);
  }

  /**
   * The upstream throttled a message. Returns whether the rate was lowered
   * (false within a second of the last cut, or when no rate is configured to lower).
   */
  throttled(): boolean {
    const now = performance.now();
    if (this.current === 0 || now - this.cutAt < CUT_INTERVAL_MS) return false;
    this.cutAt = now;
    this.factor = Math.max(MIN_FACTOR, this.factor / 2);
    this.options.apply(this.current);
    this.recovery ??= setInterval(() => this.recover(), RECOVERY_TICK_MS);
    this.recovery.unref();
    return true;
  }

  close(): void {
    clearInterval(this.recovery);
    this.recovery = undefined;
  }

  private recover(): void {
    this.factor = Math.min(1, this.factor + RECOVERY_TICK_MS / 1000 / this.options.recoverySeconds);
    if (this.factor >= 1) this.close();
    this.options.apply(this.current);
  }
}

/** SES over SMTP: "454 Throttling failure: Maximum sending rate exceeded."; the API's TooManyRequests maps to the same (ses-errors.ts). */
const THROTTLING = /throttling failure|maximum sending rate exceeded/i;
/** SES says "454 Throttling failure: Daily message quota exceeded." too: no slower rate fixes that one. */
const DAILY_QUOTA = /daily message quota/i;

/** Whether a failed send was the upstream refusing our rate. */
export function isThrottling(err: UpstreamError): boolean {
  const code = err.responseCode ?? 0;
  const text = `${err.response ?? ''} ${err.message ?? ''}`;
  return code >= 400 && code <= 499 && THROTTLING.test(text) && !DAILY_QUOTA.test(text);
}

/** `upstream` with every throttling reply reported to `onThrottled` (the reply itself goes on to the client unchanged). */
export function withThrottleFeedback(upstream: Upstream, onThrottled: () => void): Upstream {
  return {
    remoteName: upstream.remoteName,
    applicationHeaders: upstream.applicationHeaders,
    async send(envelope, message, signal) {
      try {
        return await upstream.send(envelope, message, signal);
      } catch (err) {
        if (isThrottling(err as UpstreamError)) onThrottled();
        throw err;
      }
    },
    poolSnapshot: () => upstream.poolSnapshot(),
    close: (force) => upstream.close(force),
  };
}
