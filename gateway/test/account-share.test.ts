/**
 * upstream.accountMaxSendRate divided by the ready pods: the count from a real
 * DNS server on loopback (the chart's headless Service in a cluster) or a file,
 * following changes within refreshSeconds; a failed lookup keeps the last count
 * and is counted; the configuration names what is missing. The figure with
 * three gateway processes is bench/test/account-share.test.ts.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load';
import { closeAfterEach } from '../../testkit/close-after-each';
import { startTestDnsServer } from '../../testkit/dns-server';
import { eventually } from '../../testkit/eventually';
import { sendMail } from '../../testkit/send-mail';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream } from '../../testkit/recording-upstream';

const track = closeAfterEach();
const NAME = 'mail-smtp-gateway-peers.apps.svc.cluster.local';

/** The value of an unlabelled sample on /metrics. */
async function sample(gw: TestGateway, name: string): Promise<number> {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(await gw.metricsText());
  if (!match) throw new Error(`no sample ${name} on /metrics`);
  return Number(match[1]);
}

const hasRate = (gw: TestGateway, rate: number) => async () => Math.abs((await sample(gw, 'smtp_gateway_upstream_send_rate')) - rate) < 1e-6;

describe('the ready pods from DNS (source dns)', () => {
  it('divides the account rate by the A records, follows a scale-up and a scale-down, and counts this pod alone when none is listed', async () => {
    const dns = track(await startTestDnsServer());
    dns.setRecords(NAME, ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    const upstream = track(await startRecordingUpstream({}));
    const gw = track(
      await startTestGateway({
        upstreamPort: upstream.port,
        upstream: { accountMaxSendRate: 12, accountShare: { source: 'dns', dnsName: `${NAME}.`, dnsServers: [dns.server], refreshSeconds: 1 } },
      }),
    );
    // the first answer is in before the gateway starts taking mail
    expect(await sample(gw, 'smtp_gateway_account_share_peers')).toBe(3);
    expect(await sample(gw, 'smtp_gateway_upstream_send_rate')).toBe(4);
    expect(gw.logs.find((line) => line.msg === 'sharing the account send rate')).toMatchObject({ peers: 3, messagesPerSecond: 4, dnsName: `${NAME}.` });

    dns.setRecords(NAME, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
    await eventually(hasRate(gw, 3), 'the share of 4 pods after a scale-up', 5_000);
    dns.setRecords(NAME, ['10.0.0.1', '10.0.0.2']);
    await eventually(hasRate(gw, 6), 'the share of 2 pods after a scale-down', 5_000);
    dns.setRecords(NAME, []);
    await eventually(hasRate(gw, 12), 'the whole rate when no pod is listed (NXDOMAIN)', 5_000);
    expect(await sample(gw, 'smtp_gateway_account_share_peer_errors_total')).toBe(0);
    expect(gw.logs.filter((line) => line.msg === 'ready gateway pods changed').map((line) => line.peers)).toEqual([4, 2, 1]);

    // mail still flows at the share
    expect((await sendMail(gw.relayPort, {})).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
  });
});

describe('the ready pods from a file (source file)', () => {
  it('follows the file; a file that makes no sense keeps the last count, counted and logged with the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'account-share-'));
    const file = join(dir, 'peers');
    await writeFile(file, '2\n');
    const gw = track(
      await startTestGateway({
        upstreamPort: 1,
        upstream: { accountMaxSendRate: 10, messagesPerSecond: 4, accountShare: { source: 'file', file, refreshSeconds: 1 } },
      }),
    );
    // 10 / 2 = 5, capped by messagesPerSecond
    expect(await sample(gw, 'smtp_gateway_upstream_send_rate')).toBe(4);
    await writeFile(file, '5\n');
    await eventually(hasRate(gw, 2), 'the share of 5 pods', 5_000);
    await writeFile(file, 'many\n');
    await eventually(async () => (await sample(gw, 'smtp_gateway_account_share_peer_errors_total')) > 0, 'the failed read counted', 5_000);
    expect(await sample(gw, 'smtp_gateway_account_share_peers')).toBe(5);
    expect(await sample(gw, 'smtp_gateway_upstream_send_rate')).toBe(2);
    const error = gw.logs.find((line) => line.msg === 'cannot count the ready gateway pods, keeping the last count');
    expect(error).toMatchObject({ level: 'error', source: 'file', file, peers: 5 });
    expect(String(error?.err)).toContain(`upstream.accountShare.file ${JSON.stringify(file)}: expected a whole number of pods >= 1, got "many"`);
  });
});

describe('configuration', () => {
  it('a shared rate needs the source of the count, and says which key', () => {
    expect(() => validateConfig({ upstream: { host: 'smtp.example.com', accountMaxSendRate: 14 } })).toThrow(
      /upstream\.accountShare\.dnsName: .*accountMaxSendRate is 14 and upstream\.accountShare\.source is dns, so upstream\.accountShare\.dnsName must name the headless Service/,
    );
    expect(() => validateConfig({ upstream: { host: 'smtp.example.com', accountMaxSendRate: 14, accountShare: { source: 'file' } } })).toThrow(/upstream\.accountShare\.file: .*must name the file/);
    expect(() => validateConfig({ upstream: { host: 'smtp.example.com', accountMaxSendRate: -1 } })).toThrow(/upstream\.accountMaxSendRate/);
    expect(validateConfig({ upstream: { host: 'smtp.example.com', accountMaxSendRate: 14, accountShare: { source: 'static', peers: 2 } } }).upstream.accountShare.peers).toBe(2);
  });
});
