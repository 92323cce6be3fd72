/**
 * Found by the fuzzer: a session that went through TLS (implicit TLS, or
 * STARTTLS, handshake completed or failed) must give its connection slot back
 * when it ends, or a handful of TLS clients locks an IP (and in the end
 * everyone) out. The per-IP limit here is 3, and each case runs 6 sessions one
 * after another from one address: all 6 must be greeted, and the open-connections
 * gauge must fall back to 0.
 */
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { benchGatewayConfig, startGatewayProcess, tlsOverrides, type GatewayProcess } from '../lib/gateway-process';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { SmtpConnection } from '../../testkit/smtp-client';

const PER_IP = 3;
const SESSIONS = 2 * PER_IP;

describe('connection slots are released after TLS sessions', () => {
  let certs: TestCertificates;
  let upstream: RecordingUpstream;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    certs = await makeTestCertificates();
    upstream = await startRecordingUpstream();
    gateway = await startGatewayProcess({
      config: benchGatewayConfig(upstream, tlsOverrides(certs, { policy: { maxConnectionsPerIp: PER_IP } })),
      runtime: 'tsx',
    });
  });
  afterAll(async () => {
    await gateway?.stop(10_000);
    await upstream?.close();
  });

  /** An implicit-TLS session: handshake, greeting, QUIT; returns the greeting's code (0 if none). */
  function implicitTlsSession(localAddress: string): Promise<number> {
    return new Promise((resolve) => {
      // localAddress reaches net.connect underneath, though tls.ConnectionOptions does not list it.
      const socket = tls.connect({ host: '127.0.0.1', port: gateway.ports.smtps, localAddress, ca: certs.ca, servername: 'localhost' } as tls.ConnectionOptions);
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (/^220 /m.test(text) && !text.includes('QUIT-SENT')) {
          text += 'QUIT-SENT';
          socket.write('QUIT\r\n');
        }
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Number(/^(\d{3}) /.exec(text)?.[1] ?? 0)));
    });
  }

  it('implicit TLS, handshakes that complete', async () => {
    const codes: number[] = [];
    for (let i = 0; i < SESSIONS; i += 1) codes.push(await implicitTlsSession('127.0.0.50'));
    expect(codes).toEqual(Array(SESSIONS).fill(220));
    expect(await gateway.connectionsSettle()).toBe(0);
  });

  it('implicit TLS, handshakes that fail (plain text sent to the TLS port)', async () => {
    for (let i = 0; i < SESSIONS; i += 1) {
      const connection = await SmtpConnection.connect({ host: '127.0.0.1', port: gateway.ports.smtps, localAddress: '127.0.0.51' });
      connection.write('EHLO plain.text\r\n');
      await connection.waitClosed(5_000);
    }
    expect(await gateway.connectionsSettle()).toBe(0);
    expect(await implicitTlsSession('127.0.0.51')).toBe(220);
  });

  /** Greeting, EHLO, STARTTLS over a raw socket; then a real handshake or garbage; resolves when closed. */
  function startTlsSession(localAddress: string, handshake: boolean): Promise<string> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: gateway.ports.relay, localAddress });
      socket.on('error', () => undefined);
      let text = '';
      let step = 0;
      const onData = (chunk: Buffer) => {
        text += chunk.toString();
        if (step === 0 && /^220 /m.test(text)) {
          step = 1;
          socket.write('EHLO tls.client.test\r\n');
        } else if (step === 1 && /^250 /m.test(text)) {
          step = 2;
          socket.write('STARTTLS\r\n');
        } else if (step === 2 && /\r\n220 /.test(text)) {
          step = 3;
          socket.off('data', onData);
          if (!handshake) return void socket.write('not a TLS client hello\r\n');
          const secure = tls.connect({ socket, ca: certs.ca, servername: 'localhost' });
          secure.on('error', () => undefined);
          secure.once('secureConnect', () => secure.end('QUIT\r\n'));
          secure.resume();
        }
      };
      socket.on('data', onData);
      socket.once('close', () => resolve(text));
    });
  }

  it('STARTTLS on the relay port, handshake completed and failed', async () => {
    for (let i = 0; i < SESSIONS; i += 1) {
      const transcript = await startTlsSession('127.0.0.52', i % 2 === 1);
      expect(transcript).toMatch(/\r\n220 /);
    }
    expect(await gateway.connectionsSettle()).toBe(0);
    const after = await SmtpConnection.connect({ host: '127.0.0.1', port: gateway.ports.relay, localAddress: '127.0.0.52' });
    expect((await after.reply(5_000)).code).toBe(220);
    await after.quit();
  });
});
