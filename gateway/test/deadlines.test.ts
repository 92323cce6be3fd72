/**
 * Inbound deadlines (config.deadlines, smtp/session-deadlines.ts) over real SMTP:
 * a client that trickles bytes is dropped with 421 4.4.2 when its deadline is
 * due, however often it sends a byte, and the slot it held serves the next
 * client. Deadlines are 2 s here so the suite stays fast; the defaults are in
 * README.md and RELIABILITY.md.
 */
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { makeTestCertificates } from '../../testkit/certs';
import { closeAfterEach } from '../../testkit/close-after-each';
import { openConnection, startData, type SmtpConnection, type SmtpReply } from '../../testkit/smtp-client';
import { startTestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream } from '../../testkit/recording-upstream';

const track = closeAfterEach();

const SHORT: TestGatewayOptions['deadlines'] = {
  firstCommandSeconds: 2,
  commandSeconds: 2,
  authOrMailSeconds: 30,
  dataGraceSeconds: 2,
  dataMinBytesPerSecond: 500,
  dataMaxSeconds: 30,
  sessionMaxSeconds: 60,
};
/** Scheduling slack on a shared 2-core machine: a deadline counts as kept when it fires within this of its due time. */
const SLACK_MS = 1500;

/** Writes one byte every `everyMs` until the connection closes; resolves with the 421 and when it came. */
function drip(connection: SmtpConnection, byte: string, everyMs: number): Promise<{ reply: SmtpReply; at: number }> {
  const timer = setInterval(() => {
    if (!connection.socket.destroyed) connection.write(byte);
  }, everyMs);
  connection.write(byte);
  return connection
    .reply(30_000)
    .then((reply) => ({ reply, at: performance.now() }))
    .finally(() => clearInterval(timer));
}

async function expectClosed(connection: SmtpConnection): Promise<void> {
  await connection.waitClosed(5000);
}

describe('deadlines', () => {
  it('figure: 10 clients dripping 1 byte / 5 s hold all 10 slots; each is dropped within its deadline and a normal client is served meanwhile', async () => {
    const upstream = track(await startRecordingUpstream({}));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { maxConnections: 10 }, deadlines: SHORT }));
    const started = performance.now();
    // 4 before their first command, 3 in the middle of a command line, 3 in DATA
    const greeting = await Promise.all(Array.from({ length: 4 }, () => openConnection(gw.relayPort)));
    const command = await Promise.all(Array.from({ length: 3 }, () => openConnection(gw.relayPort)));
    const data = await Promise.all(Array.from({ length: 3 }, () => openConnection(gw.relayPort)));
    for (const connection of [...greeting, ...command, ...data]) track(connection);
    const commandReady = await Promise.all(command.map(async (connection) => (await connection.command('EHLO dripper.test'), performance.now())));
    const dataReady = await Promise.all(
      data.map(async (connection) => {
        expect((await startData(connection, 'app@example.com', ['user@example.org'])).at(-1)?.code).toBe(354);
        return performance.now();
      }),
    );
    // every slot is held: a new client is refused right now
    const refused = await openConnection(gw.relayPort, { skipGreeting: true });
    expect((await refused.reply()).text).toMatch(/^421 4\.7\.0 Too many connections/);
    const drops = [
      ...greeting.map((connection) => drip(connection, 'E', 5000).then((drop) => ({ ...drop, due: started + 2000 }))),
      ...command.map((connection, i) => drip(connection, 'N', 5000).then((drop) => ({ ...drop, due: commandReady[i] + 2000 }))),
      ...data.map((connection, i) => drip(connection, 'x', 5000).then((drop) => ({ ...drop, due: dataReady[i] + 2000 }))),
    ];
    // the normal client retries as any MTA does, and is served as soon as a slot is free
    const served = (async () => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const client = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, ignoreTLS: true });
        try {
          const info = await client.sendMail({ from: 'app@example.com', to: 'user@example.org', subject: 'normal', text: 'served' });
          return { response: info.response, at: performance.now() };
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 200));
        } finally {
          client.close();
        }
      }
      throw new Error('the normal client was never served');
    })();
    const dropped = await Promise.all(drops);
    for (const drop of dropped) {
      expect(drop.reply.text).toBe('421 4.4.2 gateway.test Error: timeout exceeded');
      expect(drop.at).toBeLessThan(drop.due + SLACK_MS);
      expect(drop.at).toBeGreaterThan(drop.due - 100);
    }
    await Promise.all([...greeting, ...command, ...data].map(expectClosed));
    const normal = await served;
    expect(normal.response).toMatch(/^250 /);
    expect(normal.at - started).toBeLessThan(2000 + SLACK_MS + 2000);
    expect(upstream.messages.map((message) => message.raw.toString())).toEqual([expect.stringContaining('served')]);
    const metrics = await gw.metricsText();
    expect(metrics).toContain('smtp_gateway_deadlines_expired_total{listener="relay",deadline="first_command"} 4');
    expect(metrics).toContain('smtp_gateway_deadlines_expired_total{listener="relay",deadline="command"} 3');
    expect(metrics).toContain('smtp_gateway_deadlines_expired_total{listener="relay",deadline="data_rate"} 3');
  }, 30_000);

  it('a byte every 250 ms does not extend the command deadline (a deadline, not an idle timer)', async () => {
    const gw = track(await startTestGateway({ deadlines: SHORT }));
    const connection = track(await openConnection(gw.relayPort));
    await connection.command('EHLO client.test');
    const ready = performance.now();
    const drop = await drip(connection, 'X', 250);
    expect(drop.reply.text).toBe('421 4.4.2 gateway.test Error: timeout exceeded');
    expect(drop.at - ready).toBeGreaterThan(1900);
    expect(drop.at - ready).toBeLessThan(2000 + SLACK_MS);
    await expectClosed(connection);
  });

  it('a client that sends STARTTLS and then dribbles its handshake is cut off by the command deadline', async () => {
    const certs = await makeTestCertificates();
    const gw = track(await startTestGateway({ tls: { certFile: certs.certFile, keyFile: certs.keyFile }, deadlines: SHORT }));
    const connection = track(await openConnection(gw.relayPort));
    await connection.command('EHLO client.test');
    expect((await connection.command('STARTTLS')).code).toBe(220);
    const ready = performance.now();
    // a TLS handshake record announcing 512 bytes, then its body a byte at a time: TLS waits for the
    // whole record, so this never fails on its own, and no plaintext reply is possible now
    connection.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    const timer = setInterval(() => connection.write(Buffer.from([0x00])), 250);
    try {
      await connection.waitClosed(2000 + SLACK_MS + 1000);
    } finally {
      clearInterval(timer);
    }
    expect(performance.now() - ready).toBeGreaterThan(1900);
    expect(await gw.metricsText()).toContain('smtp_gateway_deadlines_expired_total{listener="relay",deadline="command"} 1');
  });

  it('NOOPs just inside the command deadline keep a session only until authOrMailSeconds', async () => {
    const gw = track(await startTestGateway({ deadlines: { ...SHORT, commandSeconds: 3, authOrMailSeconds: 4 } }));
    const connection = track(await openConnection(gw.relayPort));
    const connected = performance.now();
    await connection.command('EHLO client.test');
    let last: SmtpReply | undefined;
    for (let i = 0; i < 10 && !connection.socket.destroyed; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      last = await connection.command('NOOP').catch(() => undefined);
      if (last?.code === 421) break;
    }
    expect(last?.text).toBe('421 4.4.2 gateway.test Error: timeout exceeded');
    expect(performance.now() - connected).toBeLessThan(4000 + 1000 + SLACK_MS);
    await expectClosed(connection);
    expect(await gw.metricsText()).toContain('smtp_gateway_deadlines_expired_total{listener="relay",deadline="auth_or_mail"} 1');
  });

  it('DATA at a rate above dataMinBytesPerSecond is relayed however long it takes within dataMaxSeconds; past dataMaxSeconds it is dropped', async () => {
    const upstream = track(await startRecordingUpstream({}));
    const gw = track(
      await startTestGateway({ upstreamPort: upstream.port, deadlines: { ...SHORT, dataGraceSeconds: 1, dataMinBytesPerSecond: 100, dataMaxSeconds: 5 } }),
    );
    // 200 bytes every 500 ms = 400 B/s for 3 s: past the grace, above the rate
    const steady = track(await openConnection(gw.relayPort));
    await startData(steady, 'app@example.com', ['user@example.org']);
    steady.write('Subject: steady\r\n\r\n');
    for (let i = 0; i < 6; i++) {
      steady.write(`${'s'.repeat(198)}\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    steady.write('.\r\n');
    expect((await steady.reply()).code).toBe(250);
    // the same rate for longer than dataMaxSeconds
    const endless = track(await openConnection(gw.relayPort));
    await startData(endless, 'app@example.com', ['user@example.org']);
    const began = performance.now();
    const drop = await drip(endless, `${'e'.repeat(198)}\r\n`, 500);
    expect(drop.reply.text).toBe('421 4.4.2 gateway.test Error: timeout exceeded');
    expect(drop.at - began).toBeGreaterThan(4900);
    expect(drop.at - began).toBeLessThan(5000 + SLACK_MS);
    expect(upstream.messages).toHaveLength(1);
    expect(await gw.metricsText()).toContain('smtp_gateway_deadlines_expired_total{listener="relay",deadline="data_total"} 1');
  }, 20_000);

  it('a session over deadlines.maxCommands gets 421 4.7.0', async () => {
    const gw = track(await startTestGateway({ deadlines: { ...SHORT, maxCommands: 10 } }));
    const connection = track(await openConnection(gw.relayPort));
    const replies: SmtpReply[] = [];
    for (let i = 0; i < 11; i++) replies.push(await connection.command('NOOP'));
    expect(replies.slice(0, 10).every((reply) => reply.code === 250)).toBe(true);
    expect(replies[10].text).toBe('421 4.7.0 gateway.test Error: too many commands');
    await expectClosed(connection);
  });

  it('the gateway working on a command is not the client\'s time: a slow upstream does not expire the session', async () => {
    const upstream = track(await startRecordingUpstream({ replyDelayMs: 2000 }));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, deadlines: { ...SHORT, sessionMaxSeconds: 1 } }));
    const connection = track(await openConnection(gw.relayPort));
    await startData(connection, 'app@example.com', ['user@example.org']);
    connection.write('Subject: slow upstream\r\n\r\nbody\r\n.\r\n');
    // the session deadline falls due while the upstream takes 2 s: the 250 comes first, then the 421
    expect((await connection.reply(10_000)).text).toMatch(/^250 /);
    expect((await connection.reply(5000)).text).toBe('421 4.4.2 gateway.test Error: timeout exceeded');
    expect(upstream.messages).toHaveLength(1);
  }, 20_000);
});
