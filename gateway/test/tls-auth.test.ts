/**
 * TLS and AUTH on the three listeners: certificates from files (never the
 * smtp-server demo certificate), reloaded when they change; STARTTLS only when
 * a certificate is configured; AUTH only over TLS unless allowed; submission
 * requires AUTH; failed AUTH attempts are rate limited per client IP.
 */
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import nodemailer from 'nodemailer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../src/smtp/auth-users';
import { makeServerCertificate, makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { closeAfterEach } from '../../testkit/close-after-each';
import { openConnection } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

let certs: TestCertificates;
let usersFile: string;
let upstream: RecordingUpstream;
let gw: TestGateway | undefined;

beforeAll(async () => {
  certs = await makeTestCertificates();
  const dir = await mkdtemp(join(tmpdir(), 'gw-users-'));
  usersFile = join(dir, 'users');
  await writeFile(usersFile, `app:${await hashPassword('s3cret-pass', { N: 1024 })}\n`);
  upstream = await startRecordingUpstream({});
});

afterAll(async () => {
  await upstream.close();
});

afterEach(() => {
  upstream.messages.length = 0;
  upstream.mailFroms.length = 0;
});
// registered after the reset above, so (hooks run as a stack) each test's gateway and client connections close before it
const track = closeAfterEach();

function start(options: TestGatewayOptions) {
  return startTestGateway({ upstreamPort: upstream.port, ...options });
}

const tls = () => ({ certFile: certs.certFile, keyFile: certs.keyFile });

async function dial(port: number) {
  const connection = track(await openConnection(port));
  return connection;
}

function client(port: number, options: { secure?: boolean; auth?: { user: string; pass: string }; requireTLS?: boolean } = {}) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: options.secure ?? false,
    requireTLS: options.requireTLS ?? !options.secure,
    auth: options.auth,
    tls: { ca: certs.ca, servername: 'localhost' },
  });
}

const MAIL = { from: 'app@example.com', to: 'user@example.org', subject: 'tls', text: 'hello over TLS' };

describe('TLS', () => {
  it('no certificate: STARTTLS is not offered, and the TLS listeners refuse to start with a clear error', async () => {
    gw = track(await start({}));
    const connection = await dial(gw.relayPort);
    const ehlo = await connection.command('EHLO client.test');
    expect(ehlo.text).not.toContain('STARTTLS');
    expect((await connection.command('STARTTLS')).code).toBeGreaterThanOrEqual(500);
    await expect(start({ listeners: { smtps: { enabled: true } } })).rejects.toThrow(/listeners\.smtps needs a TLS certificate: set tls\.certFile and tls\.keyFile/);
  });

  it('a certificate without its key, or a file that is not one, stops the start with an error naming the files', async () => {
    await expect(start({ tls: { certFile: certs.certFile } })).rejects.toThrow(/tls\.certFile and tls\.keyFile go together/);
    await expect(start({ tls: { certFile: certs.keyFile, keyFile: certs.certFile } })).rejects.toThrow(new RegExp(`${certs.keyFile}.*${certs.certFile}|${certs.certFile}.*${certs.keyFile}`));
  });

  it('relay listener: STARTTLS with the configured certificate (verified against the test CA), then relays', async () => {
    gw = track(await start({ tls: tls() }));
    const connection = await dial(gw.relayPort);
    expect((await connection.command('EHLO client.test')).text).toContain('STARTTLS');
    const info = await client(gw.relayPort).sendMail(MAIL);
    expect(info.response).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toMatch(/with\s+ESMTPS\s+id/);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_tls_handshakes_total\{listener="relay",result="success"\} [1-9]/);
  });

  it('smtps listener: implicit TLS with the configured certificate; plain text on it is a failed handshake', async () => {
    gw = track(await start({ tls: tls(), listeners: { smtps: { enabled: true } } }));
    const port = gw.smtpsPort!;
    const info = await client(port, { secure: true }).sendMail(MAIL);
    expect(info.response).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
    // a client that speaks plain SMTP to the implicit-TLS port fails the handshake
    const plain = track(await openConnection(port, { skipGreeting: true }));
    plain.write('EHLO plain.client\r\n');
    await plain.waitClosed();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await gw.metricsText()).toMatch(/smtp_gateway_tls_handshakes_total\{listener="smtps",result="failure"\} [1-9]/);
  });

  it('counts each TLS session once: one implicit-TLS and one STARTTLS session are one handshake each', async () => {
    gw = track(await start({ tls: tls(), listeners: { smtps: { enabled: true } } }));
    const implicit = track(await openConnection(gw.smtpsPort!, { tlsCa: certs.ca }));
    expect((await implicit.command('EHLO client.test')).code).toBe(250);
    const upgraded = await dial(gw.relayPort);
    await upgraded.command('EHLO client.test');
    expect((await upgraded.command('STARTTLS')).code).toBe(220);
    await upgraded.startTls(certs.ca);
    expect((await upgraded.command('EHLO client.test')).code).toBe(250);
    const metrics = await gw.metricsText();
    expect(metrics).toMatch(/^smtp_gateway_tls_handshakes_total\{listener="smtps",result="success"\} 1$/m);
    expect(metrics).toMatch(/^smtp_gateway_tls_handshakes_total\{listener="relay",result="success"\} 1$/m);
  });

  it('reloads the certificate when the files change, without a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-tls-'));
    const certFile = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    await copyFile(certs.certFile, certFile);
    await copyFile(certs.keyFile, keyFile);
    gw = track(await start({ tls: { certFile, keyFile }, listeners: { smtps: { enabled: true } } }));
    const peerName = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({ port: gw!.smtpsPort!, host: '127.0.0.1', ca: certs.ca, servername: 'localhost' }, () => {
          const cn = socket.getPeerCertificate().subject.CN;
          socket.destroy();
          resolve(String(cn));
        });
        socket.once('error', reject);
      });
    expect(await peerName()).toBe('localhost');
    const rotated = await makeServerCertificate(certs, { commonName: 'rotated.localhost' });
    await copyFile(rotated.keyFile, keyFile);
    await copyFile(rotated.certFile, certFile);
    const deadline = Date.now() + 15_000;
    let name = await peerName();
    while (name !== 'rotated.localhost' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      name = await peerName();
    }
    expect(name).toBe('rotated.localhost');
  });
});

describe('AUTH', () => {
  it('AUTH is neither offered nor accepted before TLS unless auth.allowInsecure', async () => {
    gw = track(await start({ tls: tls(), auth: { usersFile }, policy: { allowedNetworks: [] } }));
    const connection = await dial(gw.relayPort);
    expect((await connection.command('EHLO client.test')).text).not.toContain('AUTH');
    const plain = Buffer.from('\0app\0s3cret-pass').toString('base64');
    expect((await connection.command(`AUTH PLAIN ${plain}`)).code).toBeGreaterThanOrEqual(500);
    expect((await connection.command('STARTTLS')).code).toBe(220);
    await connection.startTls(certs.ca);
    expect((await connection.command('EHLO client.test')).text).toContain('AUTH PLAIN LOGIN');
    expect((await connection.command(`AUTH PLAIN ${plain}`)).code).toBe(235);
    await gw.close();
    gw = track(await start({ auth: { usersFile, allowInsecure: true }, policy: { allowedNetworks: [] } }));
    const insecure = await dial(gw.relayPort);
    expect((await insecure.command('EHLO client.test')).text).toContain('AUTH PLAIN LOGIN');
    expect((await insecure.command(`AUTH PLAIN ${plain}`)).code).toBe(235);
  });

  it('submission before STARTTLS: MAIL FROM gets 530 even from an allowed network', async () => {
    gw = track(await start({ tls: tls(), auth: { usersFile }, listeners: { submission: { enabled: true } } }));
    const connection = await dial(gw.submissionPort!);
    await connection.command('EHLO client.test');
    const reply = await connection.command('MAIL FROM:<app@example.com>');
    expect(reply.code).toBe(530);
    expect(reply.text).toMatch(/^530 5\.7\.0 Authentication required/);
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('an authenticated client may relay from outside allowedNetworks; wrong passwords get 535', async () => {
    gw = track(await start({ tls: tls(), auth: { usersFile }, policy: { allowedNetworks: [] } }));
    await expect(client(gw.relayPort, { auth: { user: 'app', pass: 'wrong' } }).sendMail(MAIL)).rejects.toMatchObject({ responseCode: 535 });
    await expect(client(gw.relayPort).sendMail(MAIL)).rejects.toMatchObject({ responseCode: 550 });
    expect(upstream.messages).toHaveLength(0);
    const info = await client(gw.relayPort, { auth: { user: 'app', pass: 's3cret-pass' } }).sendMail(MAIL);
    expect(info.response).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toMatch(/with\s+ESMTPSA\s+id/);
    expect(gw.logText()).not.toContain('s3cret-pass');
    const metrics = await gw.metricsText();
    expect(metrics).toMatch(/smtp_gateway_auth_attempts_total\{mechanism="plain",result="failure"\} 1/);
    expect(metrics).toMatch(/smtp_gateway_auth_attempts_total\{mechanism="plain",result="success"\} 1/);
  });

  it('submission listener: AUTH is required even from an allowed network', async () => {
    gw = track(await start({ tls: tls(), auth: { usersFile }, listeners: { submission: { enabled: true } } }));
    const port = gw.submissionPort!;
    await expect(client(port).sendMail(MAIL)).rejects.toMatchObject({ responseCode: 530 });
    expect(upstream.messages).toHaveLength(0);
    const info = await client(port, { auth: { user: 'app', pass: 's3cret-pass' } }).sendMail(MAIL);
    expect(info.response).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
  });

  it('submission without auth.usersFile refuses to start with a clear error', async () => {
    await expect(start({ tls: tls(), listeners: { submission: { enabled: true } } })).rejects.toThrow(/listeners\.submission requires AUTH: set auth\.usersFile/);
  });

  it('failed AUTH attempts are rate limited per client IP: 454 4.7.0 even for the right password', async () => {
    gw = track(await start({ auth: { usersFile, allowInsecure: true, maxFailures: 2 }, policy: { allowedNetworks: [] } }));
    const connection = await dial(gw.relayPort);
    await connection.command('EHLO client.test');
    const auth = (pass: string) => connection.command(`AUTH PLAIN ${Buffer.from(`\0app\0${pass}`).toString('base64')}`);
    expect((await auth('bad1')).code).toBe(535);
    expect((await auth('bad2')).code).toBe(535);
    const limited = await auth('s3cret-pass');
    expect(limited.code).toBe(454);
    expect(limited.text).toMatch(/^454 4\.7\.0 Too many failed/);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_auth_attempts_total\{mechanism="plain",result="rate_limited"\} 1/);
  });

  it('guesses sent in parallel from one IP count together; another client IP is not limited', async () => {
    gw = track(await start({ auth: { usersFile, allowInsecure: true, maxFailures: 2 }, policy: { allowedNetworks: [] } }));
    const guessers = await Promise.all(Array.from({ length: 6 }, () => dial(gw!.relayPort)));
    await Promise.all(guessers.map((connection) => connection.command('EHLO guesser.test')));
    // all in the same tick, so every attempt is in flight before the first verdict
    for (const [n, connection] of guessers.entries()) connection.write(`AUTH PLAIN ${Buffer.from(`\0app\0guess${n}`).toString('base64')}\r\n`);
    const codes = (await Promise.all(guessers.map((connection) => connection.reply()))).map((reply) => reply.code).sort();
    expect(codes).toEqual([454, 454, 454, 454, 535, 535]);
    const other = track(await openConnection(gw.relayPort, { localAddress: '127.0.0.2' }));
    await other.command('EHLO other.test');
    expect((await other.command(`AUTH PLAIN ${Buffer.from('\0app\0s3cret-pass').toString('base64')}`)).code).toBe(235);
  });

  it('AUTH LOGIN works too, and policy.messagesPerMinute counts per user across client addresses', async () => {
    gw = track(await start({ auth: { usersFile, allowInsecure: true }, policy: { allowedNetworks: [], messagesPerMinute: 1 } }));
    const login = (localAddress: string) =>
      nodemailer.createTransport({ host: '127.0.0.1', port: gw!.relayPort, ignoreTLS: true, localAddress, authMethod: 'LOGIN', auth: { user: 'app', pass: 's3cret-pass' } });
    expect((await login('127.0.0.1').sendMail(MAIL)).response).toMatch(/^250 /);
    await expect(login('127.0.0.2').sendMail(MAIL)).rejects.toMatchObject({ responseCode: 451 });
    expect(upstream.messages).toHaveLength(1);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_auth_attempts_total\{mechanism="login",result="success"\} 2/);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_messages_total\{outcome="deferred",reason="rate_limited"\} 1/);
  });
});
