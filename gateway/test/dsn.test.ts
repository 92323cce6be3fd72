/**
 * Issue 9 section 6, no recipient is silently dropped: a recipient the
 * upstream refuses permanently while it takes the message for the others gets
 * an RFC 3464 delivery status notification to the envelope sender, sent
 * through the upstream from the null reverse-path; the client's 250 names the
 * refused recipients and the notification. A recipient refused only for now
 * fails the whole message before anyone gets it (451), so the client's retry
 * reaches everyone exactly once.
 */
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { sendMail } from '../../testkit/send-mail';
import { openConnection } from '../../testkit/smtp-client';
import { rawTransaction } from '../../testkit/raw-transaction';
import { startTestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstreamOptions } from '../../testkit/recording-upstream';

const track = closeAfterEach();
const MESSAGE = 'From: app@example.com\r\nTo: user@example.org\r\nSubject: quarterly report\r\nMessage-ID: <report-1@example.com>\r\n\r\nBody line\r\n';

async function setup(upstreamOptions: RecordingUpstreamOptions, gatewayOptions: TestGatewayOptions = {}) {
  const upstream = track(await startRecordingUpstream(upstreamOptions));
  const gw = track(await startTestGateway({ upstreamPort: upstream.port, ...gatewayOptions }));
  return { upstream, gw };
}

const send = (port: number, from: string, to: string[]) => sendMail(port, { raw: MESSAGE, from, to });

describe('recipients the upstream refuses', () => {
  it('permanently, one of three: the others get the message, the sender gets an RFC 3464 DSN naming it, the client 250 says so', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org' });
    const reply = await send(gw.relayPort, 'app@example.com', ['user@example.org', 'nobody@example.org', 'other@example.org']);
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/^250 2\.0\.0 Ok: queued as TESTQ1; upstream refused 1 recipient\(s\): nobody@example\.org; the sender was sent a delivery status notification$/);
    expect(upstream.messages).toHaveLength(2);
    const [original, dsn] = upstream.messages;
    expect(original.to).toEqual(['user@example.org', 'other@example.org']);
    // RFC 3464 section 2 / RFC 5321 section 4.5.5: from the null reverse-path, to the envelope sender
    expect(dsn.from).toBe('');
    expect(dsn.to).toEqual(['app@example.com']);

    const parsed = await simpleParser(dsn.raw, { keepDeliveryStatus: true });
    expect(parsed.from?.value[0].address).toBe('MAILER-DAEMON@gateway.test');
    expect(parsed.headers.get('auto-submitted')).toBe('auto-replied');
    const type = parsed.headers.get('content-type') as { value: string; params: Record<string, string> };
    expect(type.value).toBe('multipart/report');
    expect(type.params['report-type']).toBe('delivery-status');
    expect(parsed.text).toContain('<nobody@example.org>: 550 5.1.1 Test upstream: no such user');

    const status = parsed.attachments.find((part) => part.contentType === 'message/delivery-status');
    expect(status).toBeDefined();
    const [perMessage, ...perRecipient] = status!.content.toString('latin1').trim().split(/\r?\n\r?\n/);
    expect(fields(perMessage)).toMatchObject({ 'reporting-mta': 'dns; gateway.test' });
    expect(fields(perMessage)['arrival-date']).toMatch(/^\w{3}, \d+ \w{3} \d{4} /);
    expect(perRecipient).toHaveLength(1);
    expect(fields(perRecipient[0])).toEqual({
      'final-recipient': 'rfc822; nobody@example.org',
      action: 'failed',
      status: '5.1.1',
      'remote-mta': 'dns; 127.0.0.1',
      'diagnostic-code': 'smtp; 550 5.1.1 Test upstream: no such user',
    });

    const headers = parsed.attachments.find((part) => part.contentType === 'text/rfc822-headers');
    expect(headers).toBeDefined();
    const returned = headers!.content.toString('latin1');
    expect(returned).toContain('Subject: quarterly report');
    expect(returned).toContain('Message-ID: <report-1@example.com>');
    // headers only: the body never goes back
    expect(dsn.raw.toString('latin1')).not.toContain('Body line');

    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ outcome: 'relayed', upstreamRejected: ['nobody@example.org'], dsn: 'sent' });
    expect(await gw.metricsText()).toMatch(/smtp_gateway_dsn_total\{result="sent"\} 1/);
  });

  it('permanently, two of three: one DSN listing both, from dsn.from', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: ['nobody@example.org', 'gone@example.org'] }, { dsn: { from: 'bounces@example.com' } });
    const reply = await send(gw.relayPort, 'app@example.com', ['nobody@example.org', 'user@example.org', 'gone@example.org']);
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/upstream refused 2 recipient\(s\): nobody@example\.org, gone@example\.org; /);
    expect(upstream.messages.map((message) => message.to)).toEqual([['user@example.org'], ['app@example.com']]);
    const parsed = await simpleParser(upstream.messages[1].raw, { keepDeliveryStatus: true });
    expect(parsed.from?.value[0].address).toBe('bounces@example.com');
    const status = parsed.attachments.find((part) => part.contentType === 'message/delivery-status');
    const perRecipient = status!.content.toString('latin1').trim().split(/\r?\n\r?\n/).slice(1).map(fields);
    expect(perRecipient.map((group) => group['final-recipient'])).toEqual(['rfc822; nobody@example.org', 'rfc822; gone@example.org']);
    expect(perRecipient.every((group) => group.action === 'failed' && group.status === '5.1.1')).toBe(true);
  });

  it('honours the client\'s DSN parameters (RFC 3461): NOTIFY=NEVER gets none, ORCPT and ENVID are echoed', async () => {
    const { upstream, gw } = await setup(
      { rejectRecipient: ['quiet@example.org', 'gone@example.org'], ehlo: { hideDSN: false } },
      { upstream: { extensions: ['8BITMIME', 'DSN'] } },
    );
    const connection = track(await openConnection(gw.relayPort));
    await connection.command('EHLO client.test');
    expect((await connection.command('MAIL FROM:<app@example.com> ENVID=batch-42')).code).toBe(250);
    expect((await connection.command('RCPT TO:<user@example.org>')).code).toBe(250);
    expect((await connection.command('RCPT TO:<quiet@example.org> NOTIFY=NEVER')).code).toBe(250);
    expect((await connection.command('RCPT TO:<gone@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;Gone@Example.org')).code).toBe(250);
    expect((await connection.command('DATA')).code).toBe(354);
    connection.write(`${MESSAGE}.\r\n`);
    const reply = await connection.reply(15_000);
    expect(reply.code).toBe(250);
    expect(reply.text).toMatch(/upstream refused 2 recipient\(s\): quiet@example\.org, gone@example\.org; the sender was sent a delivery status notification/);
    expect(upstream.messages.map((message) => message.to)).toEqual([['user@example.org'], ['app@example.com']]);
    const parsed = await simpleParser(upstream.messages[1].raw, { keepDeliveryStatus: true });
    const status = parsed.attachments.find((part) => part.contentType === 'message/delivery-status');
    const [perMessage, ...perRecipient] = status!.content.toString('latin1').trim().split(/\r?\n\r?\n/).map(fields);
    expect(perMessage['original-envelope-id']).toBe('batch-42');
    expect(perRecipient).toHaveLength(1);
    expect(perRecipient[0]).toMatchObject({ 'original-recipient': 'rfc822;Gone@Example.org', 'final-recipient': 'rfc822; gone@example.org', action: 'failed' });
  });

  it('every refused recipient said NOTIFY=NEVER: no DSN, and the 250 says why', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'quiet@example.org', ehlo: { hideDSN: false } }, { upstream: { extensions: ['8BITMIME', 'DSN'] } });
    const { final: reply } = await rawTransaction(
      { port: gw.relayPort },
      { mail: 'MAIL FROM:<app@example.com>', rcpts: ['RCPT TO:<user@example.org>', 'RCPT TO:<quiet@example.org> NOTIFY=NEVER'], data: `${MESSAGE}.\r\n` },
    );
    expect(reply?.text).toMatch(/^250 .*; the sender asked for no delivery status notification \(NOTIFY\)$/);
    expect(upstream.messages).toHaveLength(1);
  });

  it('the sender is the null reverse-path: no DSN (never a bounce about a bounce); the 250 says so', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org' });
    const reply = await send(gw.relayPort, '', ['user@example.org', 'nobody@example.org']);
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/upstream refused 1 recipient\(s\): nobody@example\.org; no delivery status notification for a null sender$/);
    expect(upstream.messages.map((message) => message.to)).toEqual([['user@example.org']]);
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ dsn: 'null_sender' });
  });

  it('the upstream refuses the DSN: the client still gets 250 (the others have the message), saying so; logged as an error and counted', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org', refuseNullSender: true });
    const reply = await send(gw.relayPort, 'app@example.com', ['user@example.org', 'nobody@example.org']);
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/; the delivery status notification to the sender could not be sent$/);
    expect(upstream.messages).toHaveLength(1);
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ level: 'error', dsn: 'failed', dsnError: expect.stringMatching(/550 5\.7\.1 .*null sender/) });
    expect(await gw.metricsText()).toMatch(/smtp_gateway_dsn_total\{result="failed"\} 1/);
  });

  it('for now (4xx) while another is refused permanently: 451 for the whole message, nobody gets it, no DSN', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org', deferRecipient: 'later@example.org' });
    const reply = await send(gw.relayPort, 'app@example.com', ['user@example.org', 'nobody@example.org', 'later@example.org']);
    expect(reply.code).toBe(451);
    expect(upstream.messages).toHaveLength(0);
    expect(upstream.attempts.every((attempt) => !attempt.completed)).toBe(true);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_dsn_total\{result="sent"\} 0/);
  });

  it('every recipient refused permanently: the client gets the 5xx itself, so no DSN', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org' });
    const { final: reply } = await rawTransaction({ port: gw.relayPort }, { mail: 'MAIL FROM:<app@example.com>', rcpts: ['RCPT TO:<nobody@example.org>'], data: `${MESSAGE}.\r\n` });
    expect(reply?.code).toBe(550);
    expect(upstream.messages).toHaveLength(0);
  });
});

/** "Name: value" lines of one DSN field group, by lower-case name. */
function fields(group: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of group.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) out[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return out;
}
