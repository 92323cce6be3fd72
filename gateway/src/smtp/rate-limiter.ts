/**
 * In-memory limits on what one client may do: a sliding-window counter (failed
 * AUTH attempts per client IP, messages per minute per client or user) and a
 * counter of open connections in total and per client IP. The gateway is
 * stateless and each pod limits on its own, so these are per process by design.
 * Memory is bounded: keys whose hits have all expired are swept once per window,
 * and past `maxKeys` the least recently used key is forgotten.
 */

export interface SlidingWindowLimiterOptions {
  /** Hits allowed within any window of `windowMs`. */
  readonly limit: number;
  /** Length of the sliding window in milliseconds. */
  readonly windowMs: number;
  /** Clock, for tests. @default Date.now */
  readonly now?: () => number;
  /** Keys remembered at most; past it the least recently hit key is dropped. @default 10000 */
  readonly maxKeys?: number;
}

/** Hit times of one key, oldest first, as a queue over a plain array. */
interface HitLog {
  times: number[];
  head: number;
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}

/**
 * Exact sliding window: a hit is allowed while fewer than `limit` allowed hits
 * happened in the last `windowMs`. Refused hits are not recorded, so a client
 * that keeps retrying is let through again as soon as old hits age out.
 */
export class SlidingWindowLimiter {
  readonly limit: number;
  readonly windowMs: number;
  readonly maxKeys: number;
  private readonly now: () => number;
  private readonly logs = new Map<string, HitLog>();
  private lastSweep: number;

  constructor(options: SlidingWindowLimiterOptions) {
    this.limit = positiveInteger(options.limit, 'SlidingWindowLimiter limit');
    this.windowMs = positiveInteger(options.windowMs, 'SlidingWindowLimiter windowMs');
    this.maxKeys = positiveInteger(options.maxKeys ?? 10_000, 'SlidingWindowLimiter maxKeys');
    this.now = options.now ?? Date.now;
    this.lastSweep = this.now();
  }

  /** Records a hit for `key` if allowed; true when allowed, false when over the limit. */
  hit(key: string): boolean {
    const now = this.now();
    this.sweep(now);
    let log = this.logs.get(key);
    if (log) {
      this.expire(log, now);
      if (log.times.length - log.head >= this.limit) return false;
      // re-insert so Map order is least recently hit first
      this.logs.delete(key);
    } else {
      log = { times: [], head: 0 };
      if (this.logs.size >= this.maxKeys) this.evict(now);
    }
    log.times.push(now);
    this.logs.set(key, log);
    return true;
  }

  /** Hits recorded for `key` within the current window. */
  count(key: string): number {
    const log = this.logs.get(key);
    if (!log) return 0;
    this.expire(log, this.now());
    const count = log.times.length - log.head;
    if (count === 0) this.logs.delete(key);
    return count;
  }

  /** Whether one more hit for `key` would be allowed, without recording one. */
  allows(key: string): boolean {
    return this.count(key) < this.limit;
  }

  /** Forgets `key` (for example after a successful AUTH). */
  reset(key: string): void {
    this.logs.delete(key);
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.logs.size;
  }

  private expire(log: HitLog, now: number): void {
    const cutoff = now - this.windowMs;
    const times = log.times;
    let head = log.head;
    while (head < times.length && times[head] <= cutoff) head++;
    if (head === times.length) {
      log.times = [];
      log.head = 0;
    } else if (head > 32 && head * 2 > times.length) {
      log.times = times.slice(head);
      log.head = 0;
    } else {
      log.head = head;
    }
  }

  /** Once per window, drops keys whose newest hit has expired. */
  private sweep(now: number): void {
    if (now - this.lastSweep < this.windowMs) return;
    this.lastSweep = now;
    const cutoff = now - this.windowMs;
    for (const [key, log] of this.logs) {
      if (log.times.length === log.head || log.times[log.times.length - 1] <= cutoff) this.logs.delete(key);
    }
  }

  private evict(now: number): void {
    this.lastSweep = -Infinity;
    this.sweep(now);
    if (this.logs.size < this.maxKeys) return;
    const oldest = this.logs.keys().next();
    if (!oldest.done) this.logs.delete(oldest.value);
  }
}

export interface ConnectionCounterOptions {
  /** Open connections allowed in total. */
  readonly max: number;
  /** Open connections allowed per key (client IP). */
  readonly maxPerKey: number;
}

/** Why a connection was refused, or 'ok' when it was counted. */
export type ConnectionVerdict = 'ok' | 'total' | 'per-key';

/** Counts open connections; every 'ok' from acquire() must be matched by one release(). */
export class ConnectionCounter {
  readonly max: number;
  readonly maxPerKey: number;
  private readonly perKey = new Map<string, number>();
  private total = 0;

  constructor(options: ConnectionCounterOptions) {
    this.max = positiveInteger(options.max, 'ConnectionCounter max');
    this.maxPerKey = positiveInteger(options.maxPerKey, 'ConnectionCounter maxPerKey');
  }

  /** Counts a new connection for `key` unless a limit is reached. */
  acquire(key: string): ConnectionVerdict {
    if (this.total >= this.max) return 'total';
    const current = this.perKey.get(key) ?? 0;
    if (current >= this.maxPerKey) return 'per-key';
    this.perKey.set(key, current + 1);
    this.total++;
    return 'ok';
  }

  /** Un-counts a connection acquired for `key`; a release without an acquire is ignored. */
  release(key: string): void {
    const current = this.perKey.get(key);
    if (current === undefined) return;
    if (current <= 1) this.perKey.delete(key);
    else this.perKey.set(key, current - 1);
    this.total--;
  }

  /** Open connections for `key`. */
  countFor(key: string): number {
    return this.perKey.get(key) ?? 0;
  }

  /** Open connections in total. */
  get open(): number {
    return this.total;
  }
}
