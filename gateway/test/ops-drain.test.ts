import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { DrainController } from '../src/ops/drain';

/** A promise the test settles by hand, standing in for one mail transaction. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('DrainController', () => {
  it('starts not draining; start() sets draining and emits "drain" exactly once', () => {
    const drain = new DrainController();
    let emitted = 0;
    drain.on('drain', () => emitted++);
    expect(drain.draining).toBe(false);
    drain.start();
    drain.start();
    expect(drain.draining).toBe(true);
    expect(emitted).toBe(1);
  });

  it('track() counts a promise in flight until it settles, and hands back the same promise', async () => {
    const drain = new DrainController();
    const ok = deferred<string>();
    const failing = deferred<string>();
    const tracked = drain.track(ok.promise);
    expect(tracked).toBe(ok.promise);
    const trackedFailure = drain.track(failing.promise);
    expect(drain.inFlight).toBe(2);
    ok.resolve('250 queued');
    expect(await tracked).toBe('250 queued');
    expect(drain.inFlight).toBe(1);
    failing.reject(new Error('upstream 451'));
    await expect(trackedFailure).rejects.toThrow('upstream 451');
    expect(drain.inFlight).toBe(0);
  });

  it('track() on a rejected promise the caller ignores causes no unhandled rejection', async () => {
    const drain = new DrainController();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failing = deferred();
      const tracked = drain.track(failing.promise);
      tracked.catch(() => {}); // the caller handles its own promise, as a transaction would
      failing.reject(new Error('handled by the caller'));
      await sleep(20);
      expect(drain.inFlight).toBe(0);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('enter() returns a release that counts once however often it is called', () => {
    const drain = new DrainController();
    const releaseA = drain.enter();
    const releaseB = drain.enter();
    expect(drain.inFlight).toBe(2);
    releaseA();
    releaseA();
    expect(drain.inFlight).toBe(1);
    releaseB();
    expect(drain.inFlight).toBe(0);
  });

  it('idle() resolves true at once when nothing is in flight', async () => {
    const drain = new DrainController();
    expect(await drain.idle(0)).toBe(true);
    expect(await drain.idle(1000)).toBe(true);
  });

  it('idle() resolves true when the last transaction finishes within the time', async () => {
    const drain = new DrainController();
    const a = deferred();
    const b = deferred();
    drain.track(a.promise);
    drain.track(b.promise);
    drain.start();
    const started = Date.now();
    const idle = drain.idle(5_000);
    setTimeout(a.resolve, 20);
    setTimeout(b.resolve, 60);
    expect(await idle).toBe(true);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(50);
    expect(waited).toBeLessThan(4_000);
    expect(drain.inFlight).toBe(0);
  });

  it('idle() resolves false when the grace period ends first, and leaves no listener behind', async () => {
    const drain = new DrainController();
    const stuck = deferred();
    drain.track(stuck.promise);
    const started = Date.now();
    expect(await drain.idle(50)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(drain.listenerCount('idle')).toBe(0);
    expect(drain.inFlight).toBe(1);
    expect(await drain.idle(0)).toBe(false);
    stuck.resolve();
    await stuck.promise;
    expect(await drain.idle(0)).toBe(true);
  });

  it('emits "idle" each time the count returns to 0', () => {
    const drain = new DrainController();
    let idles = 0;
    drain.on('idle', () => idles++);
    drain.enter()();
    const release = drain.enter();
    drain.enter()();
    expect(idles).toBe(1);
    release();
    expect(idles).toBe(2);
  });
});
