/**
 * Hostile input, part two: a bounded fuzzer against one gateway process with
 * the relay and implicit-TLS listeners open. Every session must be answered or
 * closed (never left hanging), the gateway must stay up and keep relaying, and
 * its memory must come back to its baseline once the sessions are gone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCertificates } from '../../testkit/certs';
import { check } from '../lib/checker';
import { FUZZ_KINDS, captureClientHello, makeFuzzSession, runFuzzSession, type FuzzResult } from '../lib/fuzzer';
import { benchGatewayConfig, startGatewayProcess, tlsOverrides, type GatewayProcess } from '../lib/gateway-process';
import { runLoad } from '../lib/load-generator';
import { memory } from '../lib/proc-stats';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

const SESSIONS_PER_KIND = 15;
const CONCURRENCY = 8;
const MiB = 1024 * 1024;

async function settle(gateway: GatewayProcess): Promise<{ heap: number; rss: number }> {
  await gateway.connectionsSettle(6_000);
  // A full GC first, so what is measured is what is still referenced, not garbage not yet collected.
  await gateway.collectGarbage();
  return { heap: await gateway.metric('nodejs_heap_size_used_bytes'), rss: memory(gateway.pid).rss };
}

describe('SMTP fuzzer', () => {
  let upstream: RecordingUpstream;
  let gateway: GatewayProcess;
  let clientHello: Buffer;

  beforeAll(async () => {
    const certs = await makeTestCertificates();
    clientHello = await captureClientHello();
    upstream = await startRecordingUpstream();
    gateway = await startGatewayProcess({
      config: benchGatewayConfig(upstream, tlsOverrides(certs, { policy: { lineEndings: 'reject' } })),
      runtime: 'tsx',
      inspect: true,
    });
  });
  afterAll(async () => {
    const exit = await gateway?.stop(15_000);
    await upstream?.close();
    expect(exit?.code).toBe(0);
  });

  /** Sends good mail through the gateway; everything accepted must arrive. */
  async function relayStillWorks(label: string): Promise<void> {
    const runId = `fuzz-${label}-${Date.now()}`;
    const load = await runLoad({ target: () => ({ host: '127.0.0.1', port: gateway.ports.relay }), concurrency: 5, messageBytes: 4096, maxMessages: 50, runId });
    const report = check(load.outcomes, upstream.deliveries, runId);
    expect(report).toMatchObject({ accepted: 50, delivered: 50, lost: 0, ok: true });
  }

  it(`2 rounds of ${SESSIONS_PER_KIND} sessions of each of ${FUZZ_KINDS.length} kinds: each answered or closed, the gateway stays up, memory returns to baseline`, { timeout: 240_000 }, async () => {
    // Warm up (JIT, pools, TLS contexts) before the baseline is taken.
    await relayStillWorks('warm-up');
    for (const kind of FUZZ_KINDS) await runFuzzSession(makeFuzzSession(1, clientHello, kind), gateway.ports);
    const baseline = await settle(gateway);

    // Two rounds with different seeds: memory after the second must not have grown past the first (no leak per session).
    const rounds: Array<{ heap: number; rss: number }> = [];
    const results: FuzzResult[] = [];
    for (let round = 0; round < 2; round += 1) {
      const sessions = FUZZ_KINDS.flatMap((kind, k) =>
        Array.from({ length: SESSIONS_PER_KIND }, (_, i) => makeFuzzSession(100_000 * (round + 1) + 1000 * (k + 1) + i, clientHello, kind)),
      );
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < sessions.length) results.push(await runFuzzSession(sessions[next++], gateway.ports));
        }),
      );
      expect(gateway.exited()).toBeUndefined();
      await relayStillWorks(`after-round-${round}`);
      rounds.push(await settle(gateway));
    }

    const hung = results.filter((result) => result.verdict === 'hung').map((r) => `${r.session.kind}#${r.session.seed}`);
    const tally = Object.fromEntries(FUZZ_KINDS.map((kind) => [kind, results.filter((r) => r.session.kind === kind).map((r) => r.verdict[0]).join('')]));
    expect(hung, JSON.stringify(tally)).toEqual([]);
    expect(results).toHaveLength(2 * SESSIONS_PER_KIND * FUZZ_KINDS.length);
    expect((await gateway.ops('/healthz')).status).toBe(200);
    const mib = (bytes: number) => (bytes / MiB).toFixed(1);
    console.log(
      `fuzz: ${results.length} sessions, verdicts ${JSON.stringify(Object.fromEntries(['answered', 'closed'].map((v) => [v, results.filter((r) => r.verdict === v).length])))}; ` +
        `heap ${[baseline, ...rounds].map((m) => mib(m.heap)).join(' → ')} MiB, RSS ${[baseline, ...rounds].map((m) => mib(m.rss)).join(' → ')} MiB`,
    );
    expect(await gateway.metric('smtp_gateway_connections_open')).toBe(0);
    expect(rounds[0].heap).toBeLessThan(baseline.heap + 8 * MiB);
    expect(rounds[1].heap).toBeLessThan(rounds[0].heap + 4 * MiB);
    expect(rounds[1].rss).toBeLessThan(baseline.rss + 32 * MiB);
  });
});
