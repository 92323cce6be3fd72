/**
 * One SES account rate shared by every gateway process (issue 11 §2): three
 * gateway processes, each counting its peers from the same file (the stand-in
 * for the chart's headless Service; the limiter, the share and the throttling
 * response are the real ones), offered 5x the account rate for 30 s. Over every
 * 10 s window of the upstream's arrival times they deliver at most 105 % of
 * the rate, every 250 was delivered once, and nothing else was. Then a
 * "scale-down" in the file raises every pod's share within its refresh, and a
 * throttling upstream halves a pod's rate at once and lets it recover gradually.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../testkit/eventually';
import { check } from '../lib/checker';
import { benchGatewayConfig, startGatewayProcess, type GatewayProcess } from '../lib/gateway-process';
import { runLoad } from '../lib/load-generator';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

const ACCOUNT_RATE = 12;
const PODS = 3;
const OFFERED = 5 * ACCOUNT_RATE;
const DURATION_MS = 30_000;
const WINDOW_MS = 10_000;

/** Most arrivals within any WINDOW_MS, each window starting at an arrival. */
function busiestWindow(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let end = 0;
  for (let start = 0; start < sorted.length; start += 1) {
    while (end < sorted.length && sorted[end] < sorted[start] + WINDOW_MS) end += 1;
    most = Math.max(most, end - start);
  }
  return most;
}

describe('upstream.accountMaxSendRate shared by three gateway processes', () => {
  let dir: string;
  let peersFile: string;
  let upstream: RecordingUpstream;
  const gateways: GatewayProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'account-share-'));
    peersFile = join(dir, 'peers');
    await writeFile(peersFile, `${PODS}\n`);
    upstream = await startRecordingUpstream();
    const config = benchGatewayConfig(upstream, {
      upstream: {
        accountMaxSendRate: ACCOUNT_RATE,
        accountShare: { source: 'file', file: peersFile, refreshSeconds: 2 },
        maxWaitSeconds: 2,
      },
      policy: { maxConnectionsPerIp: 1000 },
    });
    for (let i = 0; i < PODS; i += 1) gateways.push(await startGatewayProcess({ config, runtime: 'tsx', startTimeoutMs: 60_000 }));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop(10_000)));
    await upstream?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`offered ${OFFERED}/s for 30 s: every 10 s window <= 105 % of ${ACCOUNT_RATE}/s, lost 0, duplicated 0`, async () => {
    let next = 0;
    const runId = `share-${Date.now()}-`;
    const result = await runLoad({
      target: () => ({ host: '127.0.0.1', port: gateways[next++ % PODS].ports.relay }),
      concurrency: 150,
      rampMs: 1000,
      messageBytes: 2048,
      arrivalRate: OFFERED,
      durationMs: DURATION_MS,
      replyTimeoutMs: 20_000,
      runId,
    });
    const report = check(result.outcomes, upstream.deliveries, runId);
    const busiest = busiestWindow(upstream.deliveredAt);
    const limit = 1.05 * ACCOUNT_RATE * (WINDOW_MS / 1000);
    console.log(
      `account share: offered ${report.sent} in ${DURATION_MS / 1000} s (${(report.sent / (DURATION_MS / 1000)).toFixed(1)}/s), accepted ${report.accepted}, deferred ${report.refusedTemporary}, delivered ${report.delivered}, busiest 10 s window ${busiest} (limit ${limit}), lost ${report.lost}, duplicated ${report.duplicated}`,
    );
    expect(report.sent).toBeGreaterThan(4 * ACCOUNT_RATE * (DURATION_MS / 1000));
    expect(report.lost).toBe(0);
    expect(report.duplicated).toBe(0);
    expect(report.unacknowledged).toBe(0);
    expect(report.accepted).toBe(report.delivered);
    expect(report.accepted + report.refusedTemporary).toBe(report.sent);
    expect(busiest).toBeLessThanOrEqual(limit);
    // the pods use their shares, not less: most of the account's 30 s worth went out
    expect(report.delivered).toBeGreaterThanOrEqual(0.85 * ACCOUNT_RATE * (DURATION_MS / 1000));
  }, 90_000);

  it('a pod count that falls (scale-down) raises every share within refreshSeconds', async () => {
    for (const gateway of gateways) expect(await gateway.metric('smtp_gateway_upstream_send_rate')).toBeCloseTo(ACCOUNT_RATE / PODS, 3);
    await writeFile(peersFile, '2\n');
    const ratesAre = async (rate: number) => (await Promise.all(gateways.map((gateway) => gateway.metric('smtp_gateway_upstream_send_rate')))).every((value) => Math.abs(value - rate) < 1e-3);
    await eventually(() => ratesAre(ACCOUNT_RATE / 2), 'every pod at half the account rate', 8_000);
    for (const gateway of gateways) expect(await gateway.metric('smtp_gateway_account_share_peers')).toBe(2);
    await writeFile(peersFile, `${PODS}\n`);
    await eventually(() => ratesAre(ACCOUNT_RATE / PODS), 'every pod back at a third of the account rate', 8_000);
  });
});

describe('throttling replies', () => {
  let upstream: RecordingUpstream;
  let gateway: GatewayProcess | undefined;

  afterAll(async () => {
    await gateway?.stop(10_000);
    await upstream?.close();
  });

  it('454 Throttling failure: 451 to the client, the rate halves at once, counted, and recovers gradually', async () => {
    upstream = await startRecordingUpstream({ throttleRate: 1 });
    gateway = await startGatewayProcess({
      config: benchGatewayConfig(upstream, { upstream: { accountMaxSendRate: 20, accountShare: { source: 'static', peers: 2, recoverySeconds: 6 } } }),
      runtime: 'tsx',
      startTimeoutMs: 60_000,
    });
    expect(await gateway.metric('smtp_gateway_upstream_send_rate')).toBe(10);
    const runId = `throttle-${Date.now()}-`;
    const throttled = await runLoad({ target: () => ({ host: '127.0.0.1', port: gateway!.ports.relay }), concurrency: 1, messageBytes: 1024, maxMessages: 1, runId });
    expect(throttled.outcomes.map((outcome) => [outcome.code, outcome.text])).toEqual([[451, expect.stringMatching(/^4\.7\.0 .*Throttling failure/)]]);
    expect(upstream.deliveries.size).toBe(0);
    expect(await gateway.metric('smtp_gateway_upstream_throttled_total')).toBe(1);
    expect(await gateway.metric('smtp_gateway_upstream_send_rate')).toBe(5);

    upstream.setBehaviour({});
    // linear recovery over 6 s: part-way after about 2 s, whole within 6 s (+ slack)
    const rate = () => gateway!.metric('smtp_gateway_upstream_send_rate');
    await eventually(async () => (await rate()) > 5, 'the rate growing back', 5_000);
    expect(await rate()).toBeLessThan(10);
    await eventually(async () => (await rate()) === 10, 'the full share again', 10_000);
    const afterId = `${runId}after-`;
    const after = await runLoad({ target: () => ({ host: '127.0.0.1', port: gateway!.ports.relay }), concurrency: 1, messageBytes: 1024, maxMessages: 1, runId: afterId });
    expect(after.outcomes.map((outcome) => outcome.code)).toEqual([250]);
    expect(check(after.outcomes, upstream.deliveries, afterId).ok).toBe(true);
  }, 60_000);
});
