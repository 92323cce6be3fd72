/**
 * The reply rules of relay/reply-mapping.ts end to end: a real client, the gateway,
 * and a real upstream that accepts, refuses, stalls or drops. Every case
 * asserts both the client's reply and what the upstream received.
 */
import { createServer } from 'node:net';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { sendMail } from '../../testkit/send-mail';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream, type RecordingUpstreamOptions } from '../../testkit/recording-upstream';

const MESSAGE = 'From: app@example.com\r\nTo: user@example.org\r\nSubject: hello\r\n\r\nBody line\r\n';

let upstream: RecordingUpstream | undefined;
let gw: TestGateway | undefined;
const track = closeAfterEach();

async function setup(upstreamOptions: RecordingUpstreamOptions, gatewayOptions: Parameters<typeof startTestGateway>[0] = {}) {
  upstream = track(await startRecordingUpstream(upstreamOptions));
  gw = track(await startTestGateway({ upstreamPort: upstream.port, ...gatewayOptions }));
  return { upstream, gw };
}

/** Sends with nodemailer; resolves with the final reply line whether accepted or refused. */
const send = (port: number, raw: string | Buffer = MESSAGE, to: string[] = ['user@example.org']) => sendMail(port, { raw, from: 'app@example.com', to });

describe('reply to the final dot', () => {
  it('upstream 250 → client 250 with the upstream queue id, message delivered with Received, Message-ID and Date added', async () => {
    const { upstream, gw } = await setup({ queueId: () => 'Q-ABC123' });
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/^250 2\.0\.0 .*Q-ABC123/);
    expect(upstream.messages).toHaveLength(1);
    const delivered = upstream.messages[0].raw.toString();
    expect(upstream.messages[0].from).toBe('app@example.com');
    expect(upstream.messages[0].to).toEqual(['user@example.org']);
    expect(delivered).toMatch(/^Received: from \S+ \(unknown \[127\.0\.0\.1\]\)\s+by\s+gateway\.test\s+\(smtp-gateway\)\s+with\s+ESMTP\s+id\s/);
    expect(delivered).toMatch(/\r\nMessage-ID: <[^>]+@gateway\.test>\r\n/i);
    expect(delivered).toMatch(/\r\nDate: \w{3}, \d+ \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n/);
    expect(delivered).toContain('\r\nSubject: hello\r\n');
    expect(delivered.endsWith('\r\n\r\nBody line\r\n')).toBe(true);
    // an independent, full MIME parser reads the edited message as one well-formed message
    const parsed = await simpleParser(upstream.messages[0].raw);
    expect(parsed.messageId).toMatch(/@gateway\.test>$/);
    expect(parsed.date?.getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(parsed.headers.get('received')).toMatch(/by gateway\.test \(smtp-gateway\)/);
    expect(parsed.subject).toBe('hello');
    expect(parsed.text).toBe('Body line\n');
  });

  it('keeps a Message-ID and Date the client already set', async () => {
    const { upstream, gw } = await setup({});
    const raw = `Message-ID: <own@example.com>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n${MESSAGE}`;
    expect((await send(gw.relayPort, raw)).code).toBe(250);
    const delivered = upstream.messages[0].raw.toString();
    expect(delivered.match(/^Message-ID:/gim)).toHaveLength(1);
    expect(delivered).toContain('Message-ID: <own@example.com>');
    expect(delivered.match(/^Date:/gim)).toHaveLength(1);
  });

  it('upstream 5xx after the data → client 5xx with the upstream reason; nothing delivered', async () => {
    const { upstream, gw } = await setup({ permFailRate: 1 });
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(554);
    expect(reply.response).toMatch(/^554 5\.7\.1 .*Test upstream refuses this message/);
    expect(upstream.messages).toHaveLength(0);
  });

  it('upstream 5xx at RCPT → client 5xx; nothing delivered', async () => {
    const { upstream, gw } = await setup({ permFailRate: 1, rejectAt: 'rcpt' });
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(554);
    expect(upstream.messages).toHaveLength(0);
    expect(upstream.attempts).toHaveLength(0);
  });

  it('upstream 4xx → client 451; nothing delivered', async () => {
    const { upstream, gw } = await setup({ tempFailRate: 1 });
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.3\.0 /);
    expect(upstream.messages).toHaveLength(0);
  });

  it('upstream refuses the connection → client 451 4.4.1', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    gw = track(await startTestGateway({ upstreamPort: closedPort }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.4\.1 /);
  });

  it('upstream stalls after the dot → client 451 after the socket timeout; the upstream never accepted it', async () => {
    const { upstream, gw } = await setup({ stallRate: 1 }, { upstream: { socketTimeoutMs: 800 } });
    const started = Date.now();
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.4\.2 .*timed out/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(upstream.messages).toHaveLength(0);
  });

  it('upstream drops the connection mid-data → client 451; nothing delivered', async () => {
    const { upstream, gw } = await setup({ dropRate: 1, dropAfterBytes: 1 });
    const big = MESSAGE + 'x'.repeat(76).concat('\r\n').repeat(3000);
    const reply = await send(gw.relayPort, big);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.4\.[12] /);
    await upstream.waitForAttempts(1);
    expect(upstream.attempts[0].completed).toBe(false);
    expect(upstream.messages).toHaveLength(0);
  });

  it('a refused message does not poison the pooled connection: the next message is relayed over it', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org' });
    const refused = await send(gw.relayPort, MESSAGE, ['nobody@example.org']);
    expect(refused.code).toBe(550);
    expect(refused.response).toMatch(/^550 5\.1\.1 .*no such user/);
    expect((await send(gw.relayPort)).code).toBe(250);
    expect(upstream.messages.map((m) => m.to)).toEqual([['user@example.org']]);
    expect(upstream.connections).toBe(1);
  });

  it('a pooled upstream connection the smarthost closed while idle: the next message goes out on a new one', async () => {
    const { upstream, gw } = await setup({});
    expect((await send(gw.relayPort)).code).toBe(250);
    upstream.dropConnections();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const reply = await send(gw.relayPort);
    expect(reply).toMatchObject({ code: 250 });
    expect(upstream.messages).toHaveLength(2);
  });

  it('upstream refuses one of two recipients: 250 naming the refused one; only the other gets it; the sender gets a DSN; logged', async () => {
    const { upstream, gw } = await setup({ rejectRecipient: 'nobody@example.org' });
    const reply = await send(gw.relayPort, MESSAGE, ['user@example.org', 'nobody@example.org']);
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/upstream refused 1 recipient\(s\): nobody@example\.org; the sender was sent a delivery status notification/);
    // the message to the accepted recipient, then the notification (dsn.test.ts reads it in detail)
    expect(upstream.messages.map((message) => [message.from, message.to])).toEqual([
      ['app@example.com', ['user@example.org']],
      ['', ['app@example.com']],
    ]);
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ outcome: 'relayed', upstreamRejected: ['nobody@example.org'], dsn: 'sent' });
    expect(await gw.metricsText()).toMatch(/smtp_gateway_recipients_total\{outcome="rejected"\} 1/);
  });

  it('upstream defers one of two recipients: client 451 and nobody gets the message, so the retry reaches both', async () => {
    const { upstream, gw } = await setup({ deferRecipient: 'later@example.org' });
    const reply = await send(gw.relayPort, MESSAGE, ['user@example.org', 'later@example.org']);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.2\.1 .*mailbox busy/);
    expect(upstream.messages).toHaveLength(0);
    expect(upstream.attempts.every((attempt) => !attempt.completed)).toBe(true);
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ outcome: 'deferred', reason: 'upstream_temporary' });
    // the pool carries on: the next message goes through whole
    expect((await send(gw.relayPort)).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
  });

  it('a reused pooled connection refused with 421 at MAIL FROM: the message is requeued whole on a new connection', async () => {
    const { upstream, gw } = await setup({ maxMessagesPerConnection: 1 });
    expect((await send(gw.relayPort)).code).toBe(250);
    const reply = await send(gw.relayPort, MESSAGE.replace('Body line', 'second message'));
    expect(reply.code).toBe(250);
    expect(upstream.messages).toHaveLength(2);
    expect(upstream.messages[1].raw.toString()).toContain('\r\n\r\nsecond message\r\n');
    expect(upstream.connections).toBe(2);
  });
});
