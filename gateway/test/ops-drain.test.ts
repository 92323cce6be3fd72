import { describe, expect, it } from 'vitest';
import { DrainController } from '../src/ops/drain';

describe('DrainController', () => {
  it('starts not draining; start() sets draining, and a second start() changes nothing', () => {
    const drain = new DrainController();
    expect(drain.draining).toBe(false);
    drain.start();
    drain.start();
    expect(drain.draining).toBe(true);
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
    const releaseA = drain.enter();
    const releaseB = drain.enter();
    drain.start();
    const started = Date.now();
    const idle = drain.idle(5_000);
    setTimeout(releaseA, 20);
    setTimeout(releaseB, 60);
    expect(await idle).toBe(true);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(50);
    expect(waited).toBeLessThan(4_000);
    expect(drain.inFlight).toBe(0);
  });

  it('idle() resolves false when the grace period ends first, and leaves no listener behind', async () => {
    const drain = new DrainController();
    const release = drain.enter();
    const started = Date.now();
    expect(await drain.idle(50)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(drain.listenerCount('idle')).toBe(0);
    expect(drain.inFlight).toBe(1);
    expect(await drain.idle(0)).toBe(false);
    release();
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
