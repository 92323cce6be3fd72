/**
 * Bounded waiting for the upstream: a message may go once it holds a send slot,
 * which takes a token from a rate bucket (messages per second, changeable while
 * running, so a per-pod share of an account rate can drive it) and one of
 * `maxConcurrent` places (the pooled connections, or concurrent API requests).
 * Waiters are served first come, first served; one that has waited `maxWaitMs`
 * is refused with 451 4.7.0 before anything of its message was sent, so the
 * client hears back while its own timeout is still far away and its retry
 * cannot duplicate a message the gateway still delivers later.
 */
import type { UpstreamPoolSnapshot } from '../ops/metrics';
import type { Upstream } from './upstream';

export interface SendSlotsOptions {
  /** Messages per second; 0 means no rate limit. */
  readonly rate: number;
  /** Messages sent at the same time. */
  readonly maxConcurrent: number;
  /** Longest wait for a slot. */
  readonly maxWaitMs: number;
  /**
   * Most tokens saved up while idle, i.e. messages that may go at once.
   * @default one second's worth (at least 1)
   */
  readonly burst?: number;
}

/** The refusal of a message whose wait for a slot ran out (reply-mapping.ts answers it 451 4.7.0). */
export class SendSlotTimeout extends Error {
  readonly code = 'ESLOTWAIT';
  constructor(readonly waitedMs: number) {
    super(`no send slot within ${Math.round(waitedMs / 1000)} s`);
  }
}

interface Waiter {
  readonly grant: () => void;
  readonly cancel: () => void;
}

export class SendSlots {
  private perSecond: number;
  private tokens: number;
  private refilledAt = performance.now();
  private inFlight = 0;
  private readonly waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SendSlotsOptions) {
    this.perSecond = options.rate;
    this.tokens = this.capacity;
  }

  /** Messages per second now (0: unlimited). */
  get rate(): number {
    return this.perSecond;
  }

  /** Messages holding a slot now. */
  get sending(): number {
    return this.inFlight;
  }

  /** Messages waiting for a slot now. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Changes the rate from now on; tokens already saved above the new burst are dropped. */
  setRate(perSecond: number): void {
    if (!Number.isFinite(perSecond) || perSecond < 0) throw new Error(`send rate must be a number >= 0, got ${perSecond}`);
    this.refill();
    this.perSecond = perSecond;
    this.tokens = Math.min(this.tokens, this.capacity);
    this.pump();
  }

  /**
   * Resolves with the function that gives the slot back, once a slot is free.
   * Rejects with SendSlotTimeout after maxWaitMs, or with the signal's reason when it aborts first.
   */
  acquire(signal: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(abortError());
      const started = performance.now();
      const leave = () => {
        clearTimeout(deadline);
        signal.removeEventListener('abort', onAbort);
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
      };
      const waiter: Waiter = {
        grant: () => {
          leave();
          resolve(this.releaser());
        },
        cancel: () => {
          leave();
          reject(abortError());
        },
      };
      const onAbort = () => waiter.cancel();
      const deadline = setTimeout(() => {
        leave();
        reject(new SendSlotTimeout(performance.now() - started));
      }, this.options.maxWaitMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  close(): void {
    clearTimeout(this.timer);
    for (const waiter of this.waiters.slice()) waiter.cancel();
  }

  private get capacity(): number {
    return this.options.burst ?? Math.max(1, this.perSecond);
  }

  private refill(): void {
    const now = performance.now();
    if (this.perSecond > 0) this.tokens = Math.min(this.capacity, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.refill();
    while (this.waiters.length && this.inFlight < this.options.maxConcurrent) {
      if (this.perSecond > 0) {
        if (this.tokens < 1) {
          this.timer = setTimeout(() => this.pump(), Math.ceil(((1 - this.tokens) / this.perSecond) * 1000));
          return;
        }
        this.tokens -= 1;
      }
      this.inFlight += 1;
      this.waiters[0].grant();
    }
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      this.pump();
    };
  }
}

/** `upstream` with every send first waiting (boundedly) for a slot of `slots`. */
export function withSendSlots(upstream: Upstream, slots: SendSlots): Upstream {
  return {
    remoteName: upstream.remoteName,
    applicationHeaders: upstream.applicationHeaders,
    async send(envelope, message, signal) {
      const release = await slots.acquire(signal);
      try {
        return await upstream.send(envelope, message, signal);
      } finally {
        release();
      }
    },
    // messages waiting for a slot are the queue; a transport without a pool (the API) counts as its slots
    poolSnapshot(): UpstreamPoolSnapshot {
      const pool = upstream.poolSnapshot();
      return { active: pool?.active ?? slots.sending, idle: pool?.idle ?? 0, queued: slots.waiting + (pool?.queued ?? 0) };
    },
    close(force) {
      slots.close();
      upstream.close(force);
    },
  };
}

const abortError = () => Object.assign(new Error('aborted while waiting for a send slot'), { name: 'AbortError' });
