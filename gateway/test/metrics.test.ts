/**
 * The gateway's /metrics after real traffic: the counters and histograms move
 * with what happened, and promtool finds nothing to complain about.
 */
import { spawnSync } from 'node:child_process';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from './helpers/close-after-each';
import { openDialog } from './helpers/smtp-dialog';
import { startTestGateway, type TestGateway } from './helpers/test-gateway';
import { startTestUpstream, type TestUpstream } from './helpers/test-upstream';

let upstream: TestUpstream | undefined;
let gw: TestGateway | undefined;
const track = closeAfterEach();

const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('/metrics', () => {
  it('counts connections, messages by outcome, bytes, recipients, upstream replies and latencies; promtool check metrics is clean', async () => {
    upstream = track(await startTestUpstream({ mode: 'accept', rejectRecipient: 'bounce@example.org' }));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { recipientDomains: { deny: ['denied.example'] } } }));
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, ignoreTLS: true });
    await client.sendMail({ from: 'app@example.com', to: ['a@example.org', 'b@example.org'], subject: 'm', text: 'one' });
    await client.sendMail({ from: 'app@example.com', to: 'bounce@example.org', subject: 'm', text: 'two' }).catch(() => undefined);
    await client.sendMail({ from: 'app@example.com', to: 'x@denied.example', subject: 'm', text: 'three' }).catch(() => undefined);
    // one recipient refused, the other relayed: one message, relayed
    await client.sendMail({ from: 'app@example.com', to: ['c@example.org', 'y@denied.example'], subject: 'm', text: 'four' });
    client.close();
    const dialog = await openDialog(gw.relayPort);
    await dialog.command('QUIT');
    await dialog.closed();

    const response = await fetch(`http://127.0.0.1:${gw.opsPort}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    // one per transaction: the refused recipient of the fourth counts as a recipient, not a message
    expect(value(text, 'smtp_gateway_messages_total{outcome="relayed",reason="ok"}')).toBe(2);
    expect(value(text, 'smtp_gateway_messages_total{outcome="rejected",reason="upstream_permanent"}')).toBe(1);
    expect(value(text, 'smtp_gateway_messages_total{outcome="rejected",reason="recipient_domain"}')).toBe(1);
    expect(value(text, 'smtp_gateway_recipients_total{outcome="relayed"}')).toBe(3);
    expect(value(text, 'smtp_gateway_recipients_total{outcome="rejected"}')).toBe(3);
    expect(value(text, 'smtp_gateway_upstream_replies_total{code="250"}')).toBe(2);
    expect(value(text, 'smtp_gateway_upstream_replies_total{code="550"}')).toBe(1);
    expect(value(text, 'smtp_gateway_connections_total{listener="relay"}')).toBeGreaterThanOrEqual(2);
    expect(value(text, 'smtp_gateway_relayed_bytes_total')).toBeGreaterThan(100);
    expect(value(text, 'smtp_gateway_upstream_duration_seconds_count')).toBe(3);
    expect(value(text, 'smtp_gateway_transaction_duration_seconds_count{outcome="relayed"}')).toBe(2);
    expect(value(text, 'smtp_gateway_ready')).toBe(1);
    // read from the gateway's own SMTPPool internals (relay/nodemailer-adapter.ts): the connection stays pooled
    expect(value(text, 'smtp_gateway_upstream_pool{state="idle"}')).toBe(1);
    expect(value(text, 'smtp_gateway_upstream_pool{state="active"}')).toBe(0);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);

    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(promtool.stdout + promtool.stderr).toBe('');
    expect(promtool.status).toBe(0);
  });
});
