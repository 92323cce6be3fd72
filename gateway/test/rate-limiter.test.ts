import { describe, expect, it } from 'vitest';
import { ConnectionCounter, SlidingWindowLimiter } from '../src/smtp/rate-limiter';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('SlidingWindowLimiter', () => {
  it('allows `limit` hits per window per key and refuses the next', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 3, windowMs: 1000, now: time.now });
    expect([limiter.hit('a'), limiter.hit('a'), limiter.hit('a')]).toEqual([true, true, true]);
    expect(limiter.hit('a')).toBe(false);
    expect(limiter.count('a')).toBe(3);
    // other keys are independent
    expect(limiter.hit('b')).toBe(true);
    expect(limiter.count('b')).toBe(1);
  });

  it('slides: each hit frees its slot exactly one window later', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 2, windowMs: 1000, now: time.now });
    limiter.hit('k'); // t=0
    time.advance(400);
    limiter.hit('k'); // t=400
    expect(limiter.hit('k')).toBe(false);
    time.advance(599); // t=999: the first hit is still inside the window
    expect(limiter.hit('k')).toBe(false);
    time.advance(1); // t=1000: the first hit has left
    expect(limiter.count('k')).toBe(1);
    expect(limiter.hit('k')).toBe(true); // t=1000
    expect(limiter.hit('k')).toBe(false);
    time.advance(400); // t=1400: the t=400 hit has left
    expect(limiter.hit('k')).toBe(true);
  });

  it('does not record refused hits, so a retrying client is not locked out longer', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 1, windowMs: 1000, now: time.now });
    expect(limiter.hit('k')).toBe(true);
    for (let i = 0; i < 50; i++) {
      time.advance(10);
      expect(limiter.hit('k')).toBe(false);
    }
    time.advance(500); // t=1000
    expect(limiter.hit('k')).toBe(true);
  });

  it('allows() peeks without recording, reset() forgets a key', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 2, windowMs: 1000, now: time.now });
    expect(limiter.allows('ip')).toBe(true);
    limiter.hit('ip');
    limiter.hit('ip');
    expect(limiter.allows('ip')).toBe(false);
    expect(limiter.count('ip')).toBe(2);
    limiter.reset('ip');
    expect(limiter.count('ip')).toBe(0);
    expect(limiter.allows('ip')).toBe(true);
  });

  it('forgets keys whose hits have all expired', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 5, windowMs: 1000, now: time.now });
    for (let i = 0; i < 500; i++) limiter.hit(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(500);
    time.advance(1001);
    limiter.hit('fresh');
    expect(limiter.size).toBe(1);
  });

  it('keeps at most maxKeys keys, dropping the least recently hit', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 1, windowMs: 60_000, now: time.now, maxKeys: 3 });
    limiter.hit('a');
    limiter.hit('b');
    limiter.hit('c');
    expect(limiter.hit('a')).toBe(false); // refused attempts do not count as use
    time.advance(1);
    expect(limiter.hit('d')).toBe(true); // evicts 'a', the least recently allowed
    expect(limiter.size).toBe(3);
    expect(limiter.count('a')).toBe(0);
    expect(limiter.count('b')).toBe(1);
    expect(limiter.count('c')).toBe(1);
    expect(limiter.count('d')).toBe(1);
  });

  it('stays correct with many hits per key (compaction of the hit log)', () => {
    const time = clock();
    const limiter = new SlidingWindowLimiter({ limit: 100, windowMs: 1000, now: time.now });
    let allowed = 0;
    for (let t = 0; t < 10_000; t += 5) {
      if (limiter.hit('busy')) allowed++;
      time.advance(5);
    }
    // 100 per 1000 ms over 10 s; a hit at t frees its slot at t+1000
    expect(allowed).toBe(1000);
    expect(limiter.count('busy')).toBeLessThanOrEqual(100);
  });

  it.each([
    [{ limit: 0, windowMs: 1000 }, /limit must be a positive integer, got 0/],
    [{ limit: 1.5, windowMs: 1000 }, /limit must be a positive integer, got 1.5/],
    [{ limit: 1, windowMs: -1 }, /windowMs must be a positive integer, got -1/],
    [{ limit: 1, windowMs: 1, maxKeys: 0 }, /maxKeys must be a positive integer, got 0/],
  ])('refuses options %j', (options, message) => {
    expect(() => new SlidingWindowLimiter(options)).toThrow(message);
  });
});

describe('ConnectionCounter', () => {
  it('refuses past the per-key limit, then past the total', () => {
    const counter = new ConnectionCounter({ max: 3, maxPerKey: 2 });
    expect(counter.acquire('a')).toBe('ok');
    expect(counter.acquire('a')).toBe('ok');
    expect(counter.acquire('a')).toBe('per-key');
    expect(counter.acquire('b')).toBe('ok');
    expect(counter.open).toBe(3);
    expect(counter.acquire('c')).toBe('total');
    expect(counter.acquire('a')).toBe('total');
    expect(counter.countFor('a')).toBe(2);
  });

  it('frees slots on release and ignores releases without an acquire', () => {
    const counter = new ConnectionCounter({ max: 2, maxPerKey: 1 });
    expect(counter.acquire('a')).toBe('ok');
    expect(counter.acquire('b')).toBe('ok');
    counter.release('a');
    expect(counter.open).toBe(1);
    expect(counter.countFor('a')).toBe(0);
    counter.release('a');
    counter.release('never');
    expect(counter.open).toBe(1);
    expect(counter.acquire('a')).toBe('ok');
    expect(counter.acquire('c')).toBe('total');
  });

  it('refuses a zero limit', () => {
    expect(() => new ConnectionCounter({ max: 0, maxPerKey: 1 })).toThrow(/max must be a positive integer, got 0/);
  });
});
