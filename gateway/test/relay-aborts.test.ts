/**
 * Failures before the final dot: the message is received whole before anything
 * goes upstream, so the upstream sees no transaction at all, the spooled copy
 * is discarded, and the client gets the right reply (or, if it left, nothing).
 */
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { openConnection, startData } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

let upstream: RecordingUpstream | undefined;
let gw: TestGateway | undefined;
const track = closeAfterEach();

const HEAD = 'From: app@example.com\r\nTo: user@example.org\r\nSubject: t\r\n\r\n';
const LINE = `${'y'.repeat(76)}\r\n`;


describe('aborted transactions', () => {
  it('client disconnects mid-DATA → no upstream transaction at all, the spooled part is discarded; nothing delivered', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port }));
    const connection = await openConnection(gw.relayPort);
    const replies = await startData(connection, 'app@example.com', ['user@example.org']);
    expect(replies.at(-1)?.code).toBe(354);
    connection.write(HEAD + LINE.repeat(200));
    // the gateway holds what it received so far, and the upstream has not been asked anything
    await eventually(async () => (await gw!.spooledBytes()) > 0, 'the gateway to spool data');
    expect(upstream.connections).toBe(0);
    connection.destroy();
    await eventually(() => gw!.logs.some((line) => line.msg === 'transaction'), 'the transaction log line');
    const logged = gw.logs.find((line) => line.msg === 'transaction');
    expect(logged).toMatchObject({ outcome: 'aborted', reason: 'client_disconnect' });
    expect(await gw.spooledBytes()).toBe(0);
    expect(upstream.connections).toBe(0);
    expect(upstream.mailFroms).toHaveLength(0);
    expect(upstream.messages).toHaveLength(0);
    // the next message goes through whole
    const next = await openConnection(gw.relayPort);
    await startData(next, 'app@example.com', ['user@example.org']);
    next.write(`${HEAD}complete\r\n.\r\n`);
    expect((await next.reply()).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toContain('complete');
    next.destroy();
  });

  it('message over maxMessageBytes → 552 5.3.4; the upstream is never asked', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { maxMessageBytes: 4096 } }));
    const connection = await openConnection(gw.relayPort);
    const ehlo = await connection.command('EHLO client.test');
    expect(ehlo.text).toContain('SIZE 4096');
    await connection.command('MAIL FROM:<app@example.com>');
    await connection.command('RCPT TO:<user@example.org>');
    expect((await connection.command('DATA')).code).toBe(354);
    connection.write(HEAD + LINE.repeat(2000) + '.\r\n');
    const reply = await connection.reply();
    expect(reply.code).toBe(552);
    expect(reply.text).toMatch(/^552 5\.3\.4 /);
    expect(upstream.mailFroms).toHaveLength(0);
    expect(upstream.messages).toHaveLength(0);
    // what came past the limit was dropped, not stored
    expect(await gw.spooledBytes()).toBe(0);
    // the session carries on
    expect((await connection.command('MAIL FROM:<app@example.com>')).code).toBe(250);
    connection.destroy();
  });

  it('SIZE declared over the limit is refused at MAIL FROM', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { maxMessageBytes: 4096 } }));
    const connection = await openConnection(gw.relayPort);
    await connection.command('EHLO client.test');
    const reply = await connection.command('MAIL FROM:<app@example.com> SIZE=100000');
    expect(reply.code).toBe(552);
    expect(upstream.mailFroms).toHaveLength(0);
    connection.destroy();
  });

  it('bare LF in the data → 550 5.6.0 (no smuggling); the upstream is never asked', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port }));
    const connection = await openConnection(gw.relayPort);
    await startData(connection, 'app@example.com', ['user@example.org']);
    connection.write(`${HEAD}first\n.\nMAIL FROM:<evil@example.com>\r\nsecond\r\n.\r\n`);
    const reply = await connection.reply();
    expect(reply.code).toBe(550);
    expect(reply.text).toMatch(/^550 5\.6\.0 .*Bare CR or LF/);
    expect(upstream.messages).toHaveLength(0);
    expect(upstream.mailFroms).toHaveLength(0);
    connection.destroy();
  });

  it('policy.lineEndings normalize → bare LF rewritten to CRLF and the message relayed', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { lineEndings: 'normalize' } }));
    const connection = await openConnection(gw.relayPort);
    await startData(connection, 'app@example.com', ['user@example.org']);
    connection.write(`${HEAD}first\nsecond\r\n.\r\n`);
    const reply = await connection.reply();
    expect(reply.code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toContain('\r\n\r\nfirst\r\nsecond\r\n');
    connection.destroy();
  });

  it('header From outside policy.senderDomains → 550 5.7.1 at the dot; nothing delivered', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { senderDomains: ['example.com'] } }));
    const connection = await openConnection(gw.relayPort);
    await startData(connection, 'app@example.com', ['user@example.org']);
    connection.write(`From: "Bank" <ceo@bank.example>\r\nSubject: t\r\n\r\n${LINE.repeat(100)}.\r\n`);
    const reply = await connection.reply();
    expect(reply.code).toBe(550);
    expect(reply.text).toMatch(/^550 5\.7\.1 Header From <ceo@bank\.example>/);
    expect(upstream.messages).toHaveLength(0);
    expect(upstream.mailFroms).toHaveLength(0);
    // an allowed header From on the same session goes through
    await connection.command('MAIL FROM:<app@example.com>');
    await connection.command('RCPT TO:<user@example.org>');
    await connection.command('DATA');
    connection.write(`From: App <app@example.com>\r\nSubject: t\r\n\r\nok\r\n.\r\n`);
    expect((await connection.reply()).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    connection.destroy();
  });
});
