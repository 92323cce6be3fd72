/**
 * Bounded waiting (upstream.maxWaitSeconds): offered far more than the send
 * rate allows, over many connections, every client hears back within the
 * bound after its data; each message is either relayed once (250) or deferred with nothing
 * sent (451 4.7.0); none is lost or sent twice. And the send slots on their
 * own: a rate changed while running, an abort while waiting.
 */
import { describe, expect, it } from 'vitest';
import { SendSlots, SendSlotTimeout } from '../src/relay/send-slots';
import { closeAfterEach } from '../../testkit/close-after-each';
import { openConnection, startData } from '../../testkit/smtp-client';
import { startTestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream } from '../../testkit/recording-upstream';

const track = closeAfterEach();
const SEQ = /^X-Test-Seq: (\d+)\r$/m;

describe('upstream.maxWaitSeconds under overload', () => {
  it('offered 10x the rate at 60 connections: every reply within maxWait + 1 s, accepted + deferred = offered, lost 0, duplicated 0', async () => {
    const rate = 10;
    const maxWaitSeconds = 2;
    const connections = 60;
    const rounds = 2;
    const upstream = track(await startRecordingUpstream({}));
    const gw = track(
      await startTestGateway({
        upstreamPort: upstream.port,
        upstream: { messagesPerSecond: rate, maxWaitSeconds, maxConnections: 5 },
        policy: { maxConnectionsPerIp: 200 },
        log: { level: 'warn' },
      }),
    );
    const results = new Map<number, { code: number; text: string; ms: number }>();
    // every connection at once, each sending its messages one after the other; the wait is timed from
    // the 354 (where the gateway starts waiting for a slot) to the reply to the final dot
    await Promise.all(
      Array.from({ length: connections }, async (_, c) => {
        const connection = track(await openConnection(gw.relayPort));
        for (let r = 0; r < rounds; r++) {
          const seq = c * rounds + r;
          expect((await startData(connection, 'app@example.com', ['user@example.org'])).at(-1)?.code).toBe(354);
          const started = performance.now();
          connection.write(`From: app@example.com\r\nTo: user@example.org\r\nX-Test-Seq: ${seq}\r\nSubject: load ${seq}\r\n\r\nbody\r\n.\r\n`);
          const reply = await connection.reply(30_000);
          results.set(seq, { code: reply.code, text: reply.text, ms: performance.now() - started });
        }
      }),
    );
    const offered = connections * rounds;
    const replies = [...results.values()];
    const accepted = [...results].filter(([, result]) => result.code === 250).map(([seq]) => seq);
    const deferred = replies.filter((result) => result.code === 451);
    expect(accepted.length + deferred.length).toBe(offered);
    for (const result of deferred) expect(result.text).toMatch(/^451 4\.7\.0 Gateway busy: no upstream send slot in time/);
    const slowest = Math.max(...replies.map((result) => result.ms));
    expect(slowest).toBeLessThanOrEqual((maxWaitSeconds + 1) * 1000);
    // the overload was real: some waited out their bound
    expect(deferred.length).toBeGreaterThan(0);
    // rate x time: at most a burst of one second's worth plus `rate` per second over the run
    expect(accepted.length).toBeGreaterThanOrEqual(rate);

    const delivered = upstream.messages.map((message) => Number(SEQ.exec(message.raw.toString('latin1'))?.[1]));
    expect([...delivered].sort((a, b) => a - b)).toEqual([...accepted].sort((a, b) => a - b)); // lost 0, and nothing deferred got through
    expect(new Set(delivered).size).toBe(delivered.length); // duplicated 0
    // nothing of a deferred message reached the upstream, not even its MAIL FROM
    expect(upstream.mailFroms).toHaveLength(accepted.length);
    const metrics = await gw.metricsText();
    expect(metrics).toContain(`smtp_gateway_messages_total{outcome="deferred",reason="upstream_wait"} ${deferred.length}`);
  });
});

describe('SendSlots', () => {
  it('applies a rate changed while messages wait (a share of an account rate can drive it)', async () => {
    const slots = new SendSlots({ rate: 1, maxConcurrent: 10, maxWaitMs: 10_000 });
    const signal = new AbortController().signal;
    (await slots.acquire(signal))(); // the one-message burst
    const started = performance.now();
    const waiting = Promise.all([slots.acquire(signal), slots.acquire(signal), slots.acquire(signal)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(slots.waiting).toBe(3);
    slots.setRate(100);
    const releases = await waiting;
    // at 1 per second the last would have waited 3 s; at 100 per second it takes a few hundredths
    expect(performance.now() - started).toBeLessThan(1500);
    for (const release of releases) release();
    expect(slots.rate).toBe(100);
    expect(() => slots.setRate(-1)).toThrow(/send rate must be a number >= 0, got -1/);
    slots.close();
  });

  it('holds at most maxConcurrent; a waiter past maxWaitMs is refused, an aborted one leaves the queue', async () => {
    const slots = new SendSlots({ rate: 0, maxConcurrent: 1, maxWaitMs: 300 });
    const release = await slots.acquire(new AbortController().signal);
    expect(slots.sending).toBe(1);
    await expect(slots.acquire(new AbortController().signal)).rejects.toBeInstanceOf(SendSlotTimeout);
    const abort = new AbortController();
    const aborted = slots.acquire(abort.signal);
    abort.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    expect(slots.waiting).toBe(0);
    const next = slots.acquire(new AbortController().signal);
    release();
    (await next)();
    expect(slots.sending).toBe(0);
    slots.close();
  });
});
