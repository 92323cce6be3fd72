/**
 * The measuring instruments themselves: the load generator and the checker,
 * straight against smtp-sink and the recording upstream (no gateway), so a
 * figure from the fault suites or the benchmark can be trusted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { check, latencyStats } from '../lib/checker';
import { runLoad } from '../lib/load-generator';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { startSmtpSink, type SmtpSink } from '../../testkit/smtp-sink';

describe('load generator and checker', () => {
  let sink: SmtpSink;
  let upstream: RecordingUpstream;
  beforeAll(async () => {
    sink = await startSmtpSink();
    upstream = await startRecordingUpstream();
  });
  afterAll(async () => {
    await sink?.stop();
    await upstream?.close();
  });

  it('sends exactly maxMessages over C connections, and smtp-sink receives each id once', async () => {
    const runId = `sink-${Date.now()}`;
    const load = await runLoad({ target: () => sink, concurrency: 5, messageBytes: 2048, maxMessages: 200, runId });
    const report = check(load.outcomes, await sink.deliveries(), runId);
    expect(load.maxOpen).toBe(5);
    expect(report).toMatchObject({ sent: 200, accepted: 200, delivered: 200, lost: 0, duplicated: 0, ok: true });
    expect(new Set(load.outcomes.map((o) => o.id)).size).toBe(200);
    const latency = latencyStats(load.outcomes);
    expect(latency.p50).toBeGreaterThan(0);
    expect(latency.max).toBeGreaterThanOrEqual(latency.p99);
  });

  it('counts 4xx as refused and never as lost', async () => {
    const runId = `temp-${Date.now()}`;
    upstream.setBehaviour({ tempFailRate: 0.5 });
    const load = await runLoad({ target: () => upstream, concurrency: 4, messageBytes: 1024, maxMessages: 100, runId });
    upstream.setBehaviour({});
    const report = check(load.outcomes, upstream.deliveries, runId);
    expect(report.refusedTemporary).toBeGreaterThan(10);
    expect(report.accepted + report.refusedTemporary).toBe(100);
    expect(report).toMatchObject({ delivered: report.accepted, lost: 0, ok: true });
  });

  it('reports loss, duplication and unacknowledged delivery when the upstream record disagrees', async () => {
    const runId = `bad-${Date.now()}`;
    const load = await runLoad({ target: () => upstream, concurrency: 2, messageBytes: 1024, maxMessages: 10, runId });
    const [first, second, third] = load.outcomes.map((o) => o.id);
    const tampered = new Map([...upstream.deliveries].filter(([id]) => id.startsWith(runId) && id !== first));
    tampered.set(second, 2);
    const refused = { ...load.outcomes[2], code: 451 };
    const report = check([...load.outcomes.slice(0, 2), refused, ...load.outcomes.slice(3)], tampered, runId);
    expect(report).toMatchObject({ lost: 1, duplicated: 1, unacknowledged: 1, ok: false });
    expect(report.examples).toEqual({ lost: [first], duplicated: [second], unacknowledged: [third] });

    // When the upstream may have died between accepting and answering, a single delivery
    // answered 451 "connection lost" is the protocol's own ambiguity, not the gateway's fault.
    const cut = { ...load.outcomes[2], code: 451, text: '4.4.2 Upstream connection was lost, try again later' };
    const outcomes = [...load.outcomes.slice(0, 2), cut, ...load.outcomes.slice(3)];
    expect(check(outcomes, upstream.deliveries, runId, { upstreamMayDie: true })).toMatchObject({ ambiguous: 1, unacknowledged: 0, ok: true });
    expect(check(outcomes, upstream.deliveries, runId)).toMatchObject({ ambiguous: 0, unacknowledged: 1, ok: false });
  });

  it('abandons transactions at every point when asked, and only after-dot ones may arrive', async () => {
    const runId = `gone-${Date.now()}`;
    const load = await runLoad({ target: () => upstream, concurrency: 4, messageBytes: 8192, maxMessages: 60, disconnectRate: 1, runId });
    const report = check(load.outcomes, upstream.deliveries, runId);
    expect(report.abandoned).toBe(60);
    expect(new Set(load.outcomes.map((o) => o.stage))).toEqual(new Set(['mail', 'rcpt', 'data', 'body', 'dot']));
    expect(report.unacknowledged).toBe(0); // nothing cut before its dot reached the upstream
    expect(report.ok).toBe(true);
  });

  it('a 421 to a pipelined MAIL and a hang-up count as refused, not as "no reply"', async () => {
    const hangingUp = await startSmtpSink({ hangUpAfter: ['MAIL'] });
    try {
      const runId = `q-${Date.now()}`;
      const load = await runLoad({ target: () => hangingUp, concurrency: 2, messageBytes: 1024, maxMessages: 10, runId });
      const report = check(load.outcomes, await hangingUp.deliveries(), runId);
      expect(report).toMatchObject({ sent: 10, refusedTemporary: 10, noReply: 0, accepted: 0 });
      expect(load.outcomes.every((o) => o.code === 421 && o.stage === 'mail')).toBe(true);
    } finally {
      await hangingUp.stop();
    }
  });

  it('sends several recipients per message, and the recording upstream sees each', async () => {
    const runId = `rcpts-${Date.now()}`;
    const load = await runLoad({ target: () => upstream, concurrency: 2, messageBytes: 1024, maxMessages: 10, recipients: 3, runId });
    expect(check(load.outcomes, upstream.deliveries, runId)).toMatchObject({ accepted: 10, delivered: 10, ok: true });
    for (const outcome of load.outcomes) expect([...(upstream.recipients.get(outcome.id) ?? [])].sort()).toEqual(['sink+0@sink.test', 'sink+1@sink.test', 'sink+2@sink.test']);
  });

  it('keeps C connections open at once and paces each at the interval', async () => {
    const runId = `open-${Date.now()}`;
    const started = Date.now();
    const load = await runLoad({ target: () => sink, concurrency: 40, messageBytes: 1024, durationMs: 1_000, intervalMs: 400, openAllFirst: true, runId });
    expect(load.maxOpen).toBe(40);
    // About 3 messages per connection in 1 s at one per 400 ms: far fewer than an unpaced run.
    expect(load.outcomes.length).toBeLessThanOrEqual(40 * 4);
    expect(load.outcomes.length).toBeGreaterThanOrEqual(40);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
