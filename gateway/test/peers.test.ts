/**
 * The gateway between independent SMTP implementations: swaks as the client,
 * Postfix's smtp-sink as the upstream, and the upstream transport's security
 * settings (STARTTLS required, implicit TLS, AUTH from secret files).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../src/smtp/auth-users';
import { makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { closeAfterEach } from '../../testkit/close-after-each';
import { sendMail } from '../../testkit/send-mail';
import { startSmtpSink, type SmtpSink } from '../../testkit/smtp-sink';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

const run = promisify(execFile);
let certs: TestCertificates;
let gw: TestGateway | undefined;
let upstream: RecordingUpstream | undefined;
let sink: SmtpSink | undefined;
const track = closeAfterEach();

beforeAll(async () => {
  certs = await makeTestCertificates();
});

/** Runs swaks; resolves with its transcript and exit code (swaks exits non-zero on a refusal). */
async function swaks(args: string[]) {
  try {
    const { stdout } = await run('swaks', ['--hide-informational', '--timeout', '15', ...args], { timeout: 30_000 });
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: e.code ?? 1, out: e.stdout ?? '' };
  }
}

/** The last server reply line swaks printed ("<-  250 ..." or "<** 554 ..."). */
const lastReply = (out: string) => out.split('\n').filter((line) => /^<[-*~]+ +\d{3}/.test(line)).map((line) => line.replace(/^<[-*~]+ +/, '')).filter((line) => !/^221/.test(line)).at(-1);

const PEER_MESSAGE = 'From: app@example.com\r\nTo: user@example.org\r\nSubject: peer\r\n\r\nthrough the gateway\r\n';
const send = (port: number) => sendMail(port, { raw: PEER_MESSAGE });

describe('swaks as the client', () => {
  it('plain relay: 250 with the upstream queue id; the upstream has the message', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port }));
    const result = await swaks(['--server', `127.0.0.1:${gw.relayPort}`, '--from', 'app@example.com', '--to', 'user@example.org', '--body', 'from swaks']);
    expect(result.code).toBe(0);
    expect(lastReply(result.out)).toMatch(/^250 2\.0\.0 Ok: queued as TESTQ1/);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toContain('from swaks');
  });

  it('STARTTLS and AUTH PLAIN against the submission listener', async () => {
    upstream = track(await startRecordingUpstream({}));
    const dir = await mkdtemp(join(tmpdir(), 'gw-swaks-'));
    await writeFile(join(dir, 'users'), `swaks:${await hashPassword('pw-123', { N: 1024 })}\n`);
    gw = track(await startTestGateway({
      upstreamPort: upstream.port,
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
      auth: { usersFile: join(dir, 'users') },
      listeners: { submission: { enabled: true } },
    }));
    const base = ['--server', `127.0.0.1:${gw.submissionPort}`, '--from', 'app@example.com', '--to', 'user@example.org', '--tls'];
    const refused = await swaks([...base, '--auth', 'PLAIN', '--auth-user', 'swaks', '--auth-password', 'wrong']);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/<~?\* +535 5\.7\.8/);
    const ok = await swaks([...base, '--auth', 'PLAIN', '--auth-user', 'swaks', '--auth-password', 'pw-123']);
    expect(ok.code).toBe(0);
    expect(lastReply(ok.out)).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString()).toMatch(/with\s+ESMTPSA\s+id/);
  });

  it('a refused message: swaks sees the upstream 5xx, the upstream delivered nothing', async () => {
    upstream = track(await startRecordingUpstream({ permFailRate: 1 }));
    gw = track(await startTestGateway({ upstreamPort: upstream.port }));
    const result = await swaks(['--server', `127.0.0.1:${gw.relayPort}`, '--from', 'app@example.com', '--to', 'user@example.org']);
    expect(result.code).not.toBe(0);
    expect(result.out).toMatch(/<\*\* +554 5\.7\.1 Upstream refused the message/);
    expect(upstream.messages).toHaveLength(0);
  });
});

describe('Postfix smtp-sink as the upstream', () => {
  it('accepts: client 250, the dump holds the message with our Received header', async () => {
    sink = track(await startSmtpSink({ dump: 'per-transaction' }));
    gw = track(await startTestGateway({ upstreamPort: sink.port }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(250);
    const dumps = await sink.dumps();
    expect(dumps).toHaveLength(1);
    expect(dumps[0]).toContain('through the gateway');
    expect(dumps[0]).toMatch(/Received: from .* by gateway\.test/);
  });

  it('soft-rejects the dot: client 451', async () => {
    sink = track(await startSmtpSink({ softReject: ['.'] }));
    gw = track(await startTestGateway({ upstreamPort: sink.port }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.3\.0 Upstream deferred the message: Error: command failed/);
  });

  it('hard-rejects the dot: client gets the upstream 5xx', async () => {
    sink = track(await startSmtpSink({ hardReject: ['.'] }));
    gw = track(await startTestGateway({ upstreamPort: sink.port }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(500);
    expect(reply.response).toMatch(/^500 5\.3\.0 Upstream refused the message/);
  });

  it('hard-rejects RCPT: client 5xx, no DATA reached it', async () => {
    sink = track(await startSmtpSink({ hardReject: ['RCPT'] }));
    gw = track(await startTestGateway({ upstreamPort: sink.port }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(500);
    expect((await sink.dumps()).join('')).not.toContain('through the gateway');
  });

  it('hangs up after the dot without replying: client 451', async () => {
    sink = track(await startSmtpSink({ disconnectAfter: ['.'] }));
    gw = track(await startTestGateway({ upstreamPort: sink.port }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.4\.2 Upstream connection was lost/);
  });
});

describe('upstream transport security', () => {
  it('security starttls: relays over TLS, verifying the upstream certificate with upstream.caFile', async () => {
    upstream = track(await startRecordingUpstream({ tls: certs }));
    gw = track(await startTestGateway({ upstream: { host: 'localhost', port: upstream.port, security: 'starttls', caFile: certs.caFile } }));
    expect((await send(gw.relayPort)).code).toBe(250);
    expect(upstream.messages[0].secure).toBe(true);
  });

  it('security starttls against an upstream without STARTTLS: 451, nothing sent in clear', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstream: { host: '127.0.0.1', port: upstream.port, security: 'starttls' } }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('security starttls with an untrusted upstream certificate: 451, nothing sent', async () => {
    upstream = track(await startRecordingUpstream({ tls: certs }));
    gw = track(await startTestGateway({ upstream: { host: 'localhost', port: upstream.port, security: 'starttls' } }));
    expect((await send(gw.relayPort)).code).toBe(451);
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('security tls (implicit) with AUTH from usernameFile/passwordFile', async () => {
    upstream = track(await startRecordingUpstream({ tls: certs, implicitTls: true, auth: { user: 'ses-user', pass: 'ses-pass' } }));
    const dir = await mkdtemp(join(tmpdir(), 'gw-upstream-secret-'));
    await writeFile(join(dir, 'user'), 'ses-user\n');
    await writeFile(join(dir, 'pass'), 'ses-pass\n');
    gw = track(await startTestGateway({
      upstream: { host: 'localhost', port: upstream.port, security: 'tls', caFile: certs.caFile, usernameFile: join(dir, 'user'), passwordFile: join(dir, 'pass') },
    }));
    expect((await send(gw.relayPort)).code).toBe(250);
    expect(upstream.messages[0]).toMatchObject({ secure: true, user: 'ses-user' });
    expect(gw.logText()).not.toContain('ses-pass');
  });

  it('wrong upstream credentials: 451 (our configuration, not the message, is at fault); nothing delivered', async () => {
    upstream = track(await startRecordingUpstream({ auth: { user: 'ses-user', pass: 'ses-pass' } }));
    const dir = await mkdtemp(join(tmpdir(), 'gw-upstream-secret-'));
    await writeFile(join(dir, 'user'), 'ses-user');
    await writeFile(join(dir, 'pass'), 'nope');
    gw = track(await startTestGateway({ upstream: { host: '127.0.0.1', port: upstream.port, security: 'none', usernameFile: join(dir, 'user'), passwordFile: join(dir, 'pass') } }));
    const reply = await send(gw.relayPort);
    expect(reply.code).toBe(451);
    expect(upstream.messages).toHaveLength(0);
  });

  it('a missing secret file stops the start with an error naming the key and path', async () => {
    await expect(startTestGateway({ upstream: { host: '127.0.0.1', port: 25, usernameFile: '/nonexistent/user', passwordFile: '/nonexistent/pass' } })).rejects.toThrow(
      /upstream\.usernameFile: cannot read "\/nonexistent\/user"/,
    );
  });

  it('upstream.messagesPerSecond spaces the messages out (an SES account send rate)', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, upstream: { messagesPerSecond: 2, maxConnections: 1 } }));
    const started = Date.now();
    for (let i = 0; i < 5; i++) expect((await send(gw.relayPort)).code).toBe(250);
    // 2 per second: a burst of one second's worth (2), then one every 0.5 s for the other 3
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    expect(upstream.messages).toHaveLength(5);
  });
});
