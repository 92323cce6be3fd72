/**
 * SMTP credentials that rotate (upstream.usernameFile / passwordFile in a
 * Secret volume): the files are swapped the way the kubelet swaps them while
 * mail flows to an upstream that requires AUTH. New connections log in with
 * the new values, no message is lost or sent twice, and a login the upstream
 * refuses is logged, counted and answered 451 so the client keeps the message.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTestCertificates } from '../../testkit/certs';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { makeSecretVolume } from '../../testkit/secret-volume';
import { sendMail } from '../../testkit/send-mail';
import { startTestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream, type SmtpCredentials } from '../../testkit/recording-upstream';

const track = closeAfterEach();
const SEQ = /^X-Test-Seq: (\d+)\r$/m;
const message = (seq: number) => `From: app@example.com\r\nTo: user@example.org\r\nX-Test-Seq: ${seq}\r\nSubject: rotation ${seq}\r\n\r\nbody\r\n`;

async function setup() {
  // the upstream reads this list at every AUTH, so a test can change which credentials it takes
  const accepted: SmtpCredentials[] = [{ user: 'gateway-v1', pass: 'password-v1' }];
  const upstream = track(await startRecordingUpstream({ auth: accepted }));
  const volume = await makeSecretVolume({ 'upstream-username': 'gateway-v1\n', 'upstream-password': 'password-v1\n' });
  const gw = track(
    await startTestGateway({
      upstream: {
        host: '127.0.0.1',
        port: upstream.port,
        security: 'none',
        usernameFile: volume.path('upstream-username'),
        passwordFile: volume.path('upstream-password'),
        // a new connection (and login) per message, so the new values are in use as soon as they are read
        maxMessagesPerConnection: 1,
      },
    }),
  );
  return { accepted, upstream, volume, gw };
}

describe('upstream credentials rotate without a restart', () => {
  it('files swapped while mail flows: later connections log in with the new user, nothing lost or duplicated', async () => {
    const { accepted, upstream, volume, gw } = await setup();
    const replies: number[] = [];
    let seq = 0;
    const flow = (async () => {
      // bounded: at most 200 messages or 20 s
      const deadline = Date.now() + 20_000;
      while (seq < 200 && Date.now() < deadline) {
        const n = seq++;
        replies[n] = (await sendMail(gw.relayPort, { raw: message(n) })).code;
        if (upstream.messages.some((m) => m.user === 'gateway-v2') && seq > 10) return;
      }
    })();
    await eventually(() => seq >= 5, 'mail flowing before the rotation');
    // both valid during the rotation, as with two SES SMTP users
    accepted.push({ user: 'gateway-v2', pass: 'password-v2' });
    await volume.update({ 'upstream-username': 'gateway-v2\n', 'upstream-password': 'password-v2\n' });
    await flow;
    expect(replies.every((code) => code === 250)).toBe(true);
    const delivered = upstream.messages.map((m) => Number(SEQ.exec(m.raw.toString('latin1'))?.[1]));
    expect(delivered.sort((a, b) => a - b)).toEqual(replies.map((_, i) => i));
    const users = upstream.messages.map((m) => m.user);
    expect(users[0]).toBe('gateway-v1');
    expect(users.at(-1)).toBe('gateway-v2');
    // once the new user appears, the old one never comes back
    expect(users.slice(users.indexOf('gateway-v2')).every((user) => user === 'gateway-v2')).toBe(true);
    expect(gw.logText()).toContain('upstream credentials reloaded');
    expect(await gw.metricsText()).toContain('smtp_gateway_upstream_credential_failures_total 0');
  });

  it('a login refused with the files in use is logged, counted and answered 451; the rotated files fix it', async () => {
    const { accepted, upstream, volume, gw } = await setup();
    expect((await sendMail(gw.relayPort, { raw: message(0) })).code).toBe(250);
    // the upstream moved to the new password before the Secret did
    accepted.splice(0, 1, { user: 'gateway-v2', pass: 'password-v2' });
    const refused = await sendMail(gw.relayPort, { raw: message(1) });
    expect(refused.response).toMatch(/^451 4\.4\.1 /);
    expect(await gw.metricsText()).toContain('smtp_gateway_upstream_credential_failures_total 1');
    expect(gw.logText()).toContain('upstream refused the gateway credentials');
    expect(gw.logText()).not.toContain('password-v1');

    await volume.update({ 'upstream-username': 'gateway-v2\n', 'upstream-password': 'password-v2\n' });
    await eventually(() => gw.logText().includes('upstream credentials reloaded'), 'the gateway to reload the rotated files');
    // the client's retry of the deferred message goes through with the new login
    expect((await sendMail(gw.relayPort, { raw: message(1) })).code).toBe(250);
    expect(upstream.messages.map((m) => [Number(SEQ.exec(m.raw.toString('latin1'))?.[1]), m.user])).toEqual([
      [0, 'gateway-v1'],
      [1, 'gateway-v2'],
    ]);
  });

  it('a rotated file that is empty is reported and the values in use stay', async () => {
    const { upstream, volume, gw } = await setup();
    await volume.update({ 'upstream-username': 'gateway-v1\n', 'upstream-password': '' });
    await eventually(() => gw.logText().includes('upstream credentials reload failed'), 'the reload error');
    expect(gw.logText()).toMatch(/upstream\.passwordFile: \\"[^"]+upstream-password\\" is empty/);
    expect((await sendMail(gw.relayPort, { raw: message(0) })).code).toBe(250);
    expect(upstream.messages[0].user).toBe('gateway-v1');
  });

  it('a rotated CA bundle is used by the next connection: an untrusted smarthost becomes trusted without a restart', async () => {
    const certs = await makeTestCertificates();
    const otherCa = await makeTestCertificates(await mkdtemp(join(tmpdir(), 'smtp-gateway-other-ca-')));
    const upstream = track(await startRecordingUpstream({ tls: certs, implicitTls: true }));
    const volume = await makeSecretVolume({ 'upstream-ca': otherCa.ca });
    const gw = track(
      await startTestGateway({
        upstream: { host: 'localhost', port: upstream.port, security: 'tls', caFile: volume.path('upstream-ca'), maxMessagesPerConnection: 1 },
      }),
    );
    expect((await sendMail(gw.relayPort, { raw: message(0) })).code).toBe(451);
    await volume.update({ 'upstream-ca': certs.ca });
    await eventually(() => gw.logText().includes('upstream credentials reloaded'), 'the gateway to reload the CA bundle');
    expect((await sendMail(gw.relayPort, { raw: message(0) })).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].secure).toBe(true);
  });
});
