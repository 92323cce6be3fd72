/**
 * Who may relay what, over real SMTP: relay permission by network (never an
 * open relay), sender and recipient domain rules, recipient count, message
 * rate and connection limits. Each refusal is checked at the client and at
 * the upstream (which must not have seen the transaction).
 */
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { openConnection, sendMessage } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

let upstream: RecordingUpstream | undefined;
let gw: TestGateway | undefined;
const track = closeAfterEach();

async function setup(options: TestGatewayOptions = {}) {
  upstream = track(await startRecordingUpstream({}));
  gw = track(await startTestGateway({ upstreamPort: upstream.port, ...options }));
  return { upstream, gw };
}

async function dial(port: number, localAddress?: string) {
  const connection = track(await openConnection(port, { localAddress }));
  await connection.command('EHLO client.test');
  return connection;
}

const BODY = 'From: app@example.com\r\nSubject: t\r\n\r\nhi\r\n.\r\n';

describe('relay permission', () => {
  it('a client outside policy.allowedNetworks without AUTH is refused at RCPT with 550 5.7.1', async () => {
    const { upstream, gw } = await setup({ policy: { allowedNetworks: ['127.0.0.1/32'] } });
    const outsider = await dial(gw.relayPort, '127.0.0.2');
    expect((await outsider.command('MAIL FROM:<app@example.com>')).code).toBe(250);
    const rcpt = await outsider.command('RCPT TO:<user@example.org>');
    expect(rcpt.code).toBe(550);
    expect(rcpt.text).toMatch(/^550 5\.7\.1 Relaying denied/);
    expect((await outsider.command('DATA')).code).toBe(503);
    // the allowed client on the same listener relays
    const insider = await dial(gw.relayPort, '127.0.0.1');
    expect((await sendMessage(insider, 'app@example.com', ['user@example.org'], BODY)).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.mailFroms).toEqual(['app@example.com']);
    // the outsider's transaction counts once it is over, by the refusal that ended it
    expect(await gw.metricsText()).toMatch(/smtp_gateway_recipients_total\{outcome="rejected"\} 1/);
    expect((await outsider.command('QUIT')).code).toBe(221);
    await outsider.waitClosed();
    const counted = /smtp_gateway_messages_total\{outcome="rejected",reason="relay_denied"\} 1/;
    await eventually(async () => counted.test(await gw.metricsText()), 'the outsider transaction counted as rejected');
  });

  it('an empty allowedNetworks list and no AUTH means nobody relays (never an open relay)', async () => {
    const { upstream, gw } = await setup({ policy: { allowedNetworks: [] } });
    const client = await dial(gw.relayPort);
    expect((await sendMessage(client, 'app@example.com', ['user@example.org'], BODY)).code).toBe(550);
    expect(upstream.mailFroms).toHaveLength(0);
  });
});

describe('sender and recipient rules', () => {
  it('MAIL FROM outside policy.senderDomains → 550 5.7.1; subdomain patterns match', async () => {
    const { upstream, gw } = await setup({ policy: { senderDomains: ['example.com', '*.apps.example.net'] } });
    const client = await dial(gw.relayPort);
    const refused = await client.command('MAIL FROM:<ceo@other.example>');
    expect(refused.code).toBe(550);
    expect(refused.text).toMatch(/^550 5\.7\.1 Sender domain/);
    expect((await client.command('MAIL FROM:<x@billing.apps.example.net>')).code).toBe(250);
    await client.command('RSET');
    expect((await sendMessage(client, 'app@example.com', ['user@example.org'], BODY)).code).toBe(250);
    expect(upstream.mailFroms).toEqual(['app@example.com']);
  });

  it('recipient deny and allow lists → 550 5.7.1 per recipient; the accepted ones are relayed', async () => {
    const { upstream, gw } = await setup({ policy: { recipientDomains: { allow: ['example.org', 'example.net'], deny: ['example.net'] } } });
    const client = await dial(gw.relayPort);
    await client.command('MAIL FROM:<app@example.com>');
    const denied = await client.command('RCPT TO:<a@example.net>');
    expect(denied.code).toBe(550);
    expect(denied.text).toMatch(/^550 5\.7\.1 Recipient domain/);
    expect((await client.command('RCPT TO:<b@elsewhere.example>')).code).toBe(550);
    expect((await client.command('RCPT TO:<c@example.org>')).code).toBe(250);
    await client.command('DATA');
    client.write(BODY);
    expect((await client.reply()).code).toBe(250);
    expect(upstream.messages.map((message) => message.to)).toEqual([['c@example.org']]);
  });

  it('more than policy.maxRecipients → 452 4.5.3 for the extra ones; the message goes to the first ones only', async () => {
    const { upstream, gw } = await setup({ policy: { maxRecipients: 2 } });
    const client = await dial(gw.relayPort);
    await client.command('MAIL FROM:<app@example.com>');
    expect((await client.command('RCPT TO:<a@example.org>')).code).toBe(250);
    expect((await client.command('RCPT TO:<b@example.org>')).code).toBe(250);
    const third = await client.command('RCPT TO:<c@example.org>');
    expect(third.code).toBe(452);
    expect(third.text).toMatch(/^452 4\.5\.3 /);
    await client.command('DATA');
    client.write(BODY);
    expect((await client.reply()).code).toBe(250);
    expect(upstream.messages[0].to).toEqual(['a@example.org', 'b@example.org']);
  });
});

describe('limits', () => {
  it('policy.messagesPerMinute per client IP → 451 4.7.1 at MAIL FROM once exceeded; other IPs unaffected', async () => {
    const { upstream, gw } = await setup({ policy: { messagesPerMinute: 2 } });
    const client = await dial(gw.relayPort, '127.0.0.1');
    expect((await sendMessage(client, 'app@example.com', ['user@example.org'], BODY)).code).toBe(250);
    expect((await sendMessage(client, 'app@example.com', ['user@example.org'], BODY)).code).toBe(250);
    const limited = await client.command('MAIL FROM:<app@example.com>');
    expect(limited.code).toBe(451);
    expect(limited.text).toMatch(/^451 4\.7\.1 /);
    const other = await dial(gw.relayPort, '127.0.0.3');
    expect((await sendMessage(other, 'app@example.com', ['user@example.org'], BODY)).code).toBe(250);
    expect(upstream.messages).toHaveLength(3);
  });

  it('policy.maxConnectionsPerIp and maxConnections → 421 4.7.0 before the greeting', async () => {
    const { gw } = await setup({ policy: { maxConnectionsPerIp: 2, maxConnections: 3 } });
    const first = await dial(gw.relayPort, '127.0.0.1');
    await dial(gw.relayPort, '127.0.0.1');
    const third = track(await openConnection(gw.relayPort, { localAddress: '127.0.0.1' }));
    expect(third.greeting?.code).toBe(421);
    expect(third.greeting?.text).toMatch(/^421 4\.7\.0 Too many connections from your address/);
    await third.waitClosed();
    await dial(gw.relayPort, '127.0.0.2');
    const fourth = track(await openConnection(gw.relayPort, { localAddress: '127.0.0.4' }));
    expect(fourth.greeting?.text).toMatch(/^421 4\.7\.0 Too many connections, try again later/);
    const metrics = await gw.metricsText();
    expect(metrics).toMatch(/smtp_gateway_connections_refused_total\{listener="relay",reason="max_per_ip"\} 1/);
    expect(metrics).toMatch(/smtp_gateway_connections_refused_total\{listener="relay",reason="max_connections"\} 1/);
    // a closed connection frees its slot
    first.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const again = track(await openConnection(gw.relayPort, { localAddress: '127.0.0.1' }));
    expect(again.greeting?.code).toBe(220);
  });

  it('nodemailer as the client: relayed through the gateway with one transaction log line and no body in the logs', async () => {
    const { upstream, gw } = await setup();
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, secure: false, ignoreTLS: true });
    const info = await client.sendMail({ from: 'app@example.com', to: 'user@example.org', subject: 'hi', text: 'SECRET-BODY-TEXT' });
    client.close();
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as TESTQ1/);
    expect(upstream.messages[0].raw.toString()).toContain('SECRET-BODY-TEXT');
    const lines = gw.logs.filter((line) => line.msg === 'transaction');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ outcome: 'relayed', client: '127.0.0.1', from: 'app@example.com', recipients: 1 });
    expect(lines[0].sizeIn).toBeGreaterThan(0);
    expect(lines[0].upstreamReply).toMatch(/^250 /);
    expect(gw.logText()).not.toContain('SECRET-BODY-TEXT');
  });
});
