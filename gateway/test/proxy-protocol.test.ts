/**
 * PROXY protocol v1 and v2 on the listeners: accepted only from
 * proxyProtocol.trustedNetworks, where the client address in the header is
 * what the relay policy, the limits, the logs and the Received header use; a
 * PROXY header from anyone else is refused.
 */
import { connect } from 'node:net';
import nodemailer from 'nodemailer';
import type { GetSocketHandler } from 'nodemailer/lib/mailer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { closeAfterEach } from '../../testkit/close-after-each';
import { openConnection, startData, type SmtpConnection } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

let upstream: RecordingUpstream;
let certs: TestCertificates;
let gw: TestGateway | undefined;

beforeAll(async () => {
  upstream = await startRecordingUpstream({});
  certs = await makeTestCertificates();
});
afterAll(() => upstream.close());
afterEach(() => {
  upstream.messages.length = 0;
  upstream.mailFroms.length = 0;
});
// registered after the reset above, so (hooks run as a stack) each test's gateway and client connections close before it
const track = closeAfterEach();

/** A PROXY v2 header for a TCP4 connection from `source`. */
function proxyV2(source: string, sourcePort = 40000): Buffer {
  const signature = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
  const body = Buffer.alloc(12);
  source.split('.').forEach((octet, i) => body.writeUInt8(Number(octet), i));
  [127, 0, 0, 1].forEach((octet, i) => body.writeUInt8(octet, 4 + i));
  body.writeUInt16BE(sourcePort, 8);
  body.writeUInt16BE(25, 10);
  const head = Buffer.from([0x21, 0x11, 0x00, 12]);
  return Buffer.concat([signature, head, body]);
}

const proxyV1 = (source: string) => `PROXY TCP4 ${source} 127.0.0.1 40001 25\r\n`;

function start(options: TestGatewayOptions = {}) {
  return startTestGateway({
    upstreamPort: upstream.port,
    proxyProtocol: { enabled: true, trustedNetworks: ['127.0.0.1/32'] },
    policy: { allowedNetworks: ['10.1.2.0/24'] },
    ...options,
  });
}

async function dial(port: number, preamble: Buffer | string, localAddress = '127.0.0.1') {
  return track(await openConnection(port, { preamble, localAddress }));
}

async function relayOne(connection: SmtpConnection) {
  const replies = await startData(connection, 'app@example.com', ['user@example.org']);
  const refused = replies.find((reply) => reply.code >= 400);
  if (refused) return refused;
  connection.write('From: app@example.com\r\nSubject: p\r\n\r\nproxied\r\n.\r\n');
  return connection.reply();
}

describe('PROXY protocol', () => {
  it('v2 from a trusted load balancer: the header address decides relay permission and appears in Received and logs', async () => {
    gw = track(await start());
    const connection = await dial(gw.relayPort, proxyV2('10.1.2.3'));
    expect(connection.greeting?.code).toBe(220);
    expect((await relayOne(connection)).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toMatch(/^Received: from client\.test \(unknown \[10\.1\.2\.3\]\)/);
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ client: '10.1.2.3', outcome: 'relayed' });
  });

  it('v1 from a trusted load balancer works the same way', async () => {
    gw = track(await start());
    const connection = await dial(gw.relayPort, proxyV1('10.1.2.4'));
    expect((await relayOne(connection)).code).toBe(250);
    expect(upstream.messages[0].raw.toString()).toContain('[10.1.2.4]');
  });

  it('a proxied client outside allowedNetworks is refused at RCPT even though the load balancer itself is on loopback', async () => {
    gw = track(await start());
    const connection = await dial(gw.relayPort, proxyV2('192.0.2.50'));
    const reply = await relayOne(connection);
    expect(reply.code).toBe(550);
    expect(reply.text).toMatch(/^550 5\.7\.1 /);
    expect(upstream.messages).toHaveLength(0);
  });

  it('a PROXY header from a peer outside trustedNetworks is refused: connection closed, nothing relayed', async () => {
    gw = track(await start({ policy: { allowedNetworks: ['127.0.0.0/8', '10.1.2.0/24'] } }));
    for (const header of [proxyV2('10.1.2.3'), Buffer.from(proxyV1('10.1.2.3'))]) {
      const connection = track(await openConnection(gw.relayPort, { preamble: header, localAddress: '127.0.0.2', skipGreeting: true }));
      await connection.waitClosed();
    }
    expect(upstream.mailFroms).toHaveLength(0);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_connections_refused_total\{listener="relay",reason="proxy_untrusted"\} 2/);
  });

  it('commands pipelined behind an untrusted PROXY header are never run', async () => {
    // 127.0.0.2 may relay by network, so only the refusal stops this transaction
    gw = track(await start({ policy: { allowedNetworks: ['127.0.0.0/8'] } }));
    const transaction = [
      'EHLO smuggler',
      'MAIL FROM:<app@example.com>',
      'RCPT TO:<someone@example.net>',
      'DATA',
      'Subject: behind a forged header',
      '',
      'body',
      '.',
      'QUIT',
      '',
    ].join('\r\n');
    const connection = track(await openConnection(gw.relayPort, {
      preamble: Buffer.concat([Buffer.from(proxyV1('10.1.2.3')), Buffer.from(transaction)]),
      localAddress: '127.0.0.2',
      skipGreeting: true,
    }));
    await connection.waitClosed();
    expect(upstream.mailFroms).toHaveLength(0);
    expect(upstream.messages).toHaveLength(0);
    expect(gw.logText()).not.toMatch(/"msg":"transaction"/);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_connections_refused_total\{listener="relay",reason="proxy_untrusted"\} 1/);
  });

  it('with PROXY protocol off, a PROXY header is refused from anyone', async () => {
    gw = track(await start({ proxyProtocol: { enabled: false } }));
    const connection = track(await openConnection(gw.relayPort, { preamble: proxyV2('10.1.2.3'), skipGreeting: true }));
    await connection.waitClosed();
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('a trusted peer that sends no valid header is refused', async () => {
    gw = track(await start());
    const connection = track(await openConnection(gw.relayPort, { preamble: 'EHLO no-proxy-header\r\n', skipGreeting: true }));
    await connection.waitClosed();
    expect(await gw.metricsText()).toMatch(/smtp_gateway_connections_refused_total\{listener="relay",reason="proxy_invalid"\} 1/);
  });

  it('connection limits count the proxied client address, not the load balancer', async () => {
    gw = track(await start({ policy: { allowedNetworks: ['10.1.2.0/24'], maxConnectionsPerIp: 1 } }));
    const first = await dial(gw.relayPort, proxyV2('10.1.2.5'));
    expect(first.greeting?.code).toBe(220);
    const other = await dial(gw.relayPort, proxyV2('10.1.2.6'));
    expect(other.greeting?.code).toBe(220);
    const same = await dial(gw.relayPort, proxyV2('10.1.2.5'));
    expect(same.greeting?.code).toBe(421);
  });

  it('implicit TLS behind the load balancer: PROXY v2 header, then the TLS handshake', async () => {
    gw = track(await start({ tls: { certFile: certs.certFile, keyFile: certs.keyFile }, listeners: { smtps: { enabled: true } } }));
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: gw.smtpsPort, secure: true, tls: { ca: certs.ca, servername: 'localhost' } });
    // write the PROXY header on the raw socket before nodemailer starts TLS on it
    const getSocket: GetSocketHandler = (_options, callback) => {
      const socket = connect(gw!.smtpsPort!, '127.0.0.1', () => {
        socket.write(proxyV2('10.1.2.7'));
        callback(null, { connection: socket });
      });
      socket.once('error', (err) => callback(err));
    };
    transport.getSocket = getSocket;
    const info = await transport.sendMail({ from: 'app@example.com', to: 'user@example.org', subject: 's', text: 'x' });
    transport.close();
    expect(info.response).toMatch(/^250 /);
    expect(upstream.messages[0].raw.toString()).toContain('[10.1.2.7]');
  });
});
