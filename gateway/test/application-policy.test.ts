/**
 * Per-application policy over real SMTP: the applications file (mounted the
 * way the kubelet mounts a Secret) decides by AUTH user or client network which
 * application a session is; each rule (senders, rate, recipients, unmatched
 * sessions, X-SES headers) is checked at the client and at a real upstream,
 * which receives the SES configuration set and tags as headers. The file
 * reloads while mail flows, a bad file keeps the previous policy, and the
 * metrics carry only configured application names.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFileError, parseApplicationFile } from '../src/smtp/application-file';
import { hashPassword } from '../src/smtp/auth-users';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { makeSecretVolume, type SecretVolume } from '../../testkit/secret-volume';
import { openConnection, sendMessage, type SmtpConnection } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

const track = closeAfterEach();
const PASSWORD = 'app-pass-1';
let usersFile: string;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-gateway-apps-'));
  usersFile = join(dir, 'users');
  const hash = await hashPassword(PASSWORD, { N: 1024 });
  await writeFile(usersFile, ['billing-app', 'news-app', 'stray-app'].map((user) => `${user}:${hash}`).join('\n'));
});

const APPLICATIONS = `
applications:
  - name: billing
    match: { users: [billing-app] }
    senders: [billing.example.com, noreply@example.com]
    maxRecipients: 2
    ses:
      configurationSet: billing-events
      tags: { app: billing, team: payments }
  - name: newsletter
    match: { users: [news-app], networks: [127.0.0.0/24] }
    senders: ["*.news.example.com"]
    messagesPerMinute: 2
    ses: { configurationSet: newsletter }
  - name: cron
    match: { networks: [127.0.0.2/32] }
`;

async function setup(files: string = APPLICATIONS, options: TestGatewayOptions = {}) {
  const upstream: RecordingUpstream = track(await startRecordingUpstream({}));
  const volume: SecretVolume = await makeSecretVolume({ 'applications.yaml': files });
  const gw: TestGateway = track(
    await startTestGateway({
      upstreamPort: upstream.port,
      auth: { usersFile, allowInsecure: true },
      policy: { allowedNetworks: ['127.0.0.0/8'] },
      ...options,
      applications: { file: volume.path('applications.yaml'), ...options.applications },
    }),
  );
  return { upstream, volume, gw };
}

function authed(gw: TestGateway, user: string) {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, secure: false, ignoreTLS: true, auth: { user, pass: PASSWORD } });
  return track({ close: () => transport.close(), transport }).transport;
}

async function dial(gw: TestGateway, localAddress: string): Promise<SmtpConnection> {
  const connection = track(await openConnection(gw.relayPort, { localAddress }));
  await connection.command('EHLO client.test');
  return connection;
}

function relay(connection: SmtpConnection, from: string, to: string[], headers = `From: <${from}>\r\n`) {
  return sendMessage(connection, from, to, `${headers}Subject: t\r\n\r\nhi\r\n.\r\n`);
}

const headerOf = (raw: Buffer, name: string) =>
  raw
    .toString('latin1')
    .split('\r\n\r\n')[0]
    .split('\r\n')
    .filter((line) => line.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((line) => line.slice(name.length + 1).trim());

describe('which application a session is', () => {
  it('an AUTH user gets its application: allowed senders relay with the SES configuration set and tags as headers', async () => {
    const { upstream, gw } = await setup();
    const billing = authed(gw, 'billing-app');
    await billing.sendMail({ from: 'invoices@billing.example.com', to: 'a@example.org', subject: 's', text: 'x' });
    await billing.sendMail({ from: 'noreply@example.com', to: 'b@example.org', subject: 's', text: 'x' });
    expect(upstream.messages).toHaveLength(2);
    for (const message of upstream.messages) {
      expect(headerOf(message.raw, 'X-SES-CONFIGURATION-SET')).toEqual(['billing-events']);
      expect(headerOf(message.raw, 'X-SES-MESSAGE-TAGS')).toEqual(['app=billing, team=payments']);
    }
    expect(await gw.metricsText()).toMatch(/smtp_gateway_application_messages_total\{application="billing",outcome="relayed"\} 2/);
    expect(gw.logs.filter((line) => line.msg === 'transaction').map((line) => line.application)).toEqual(['billing', 'billing']);
  });

  it('AUTH decides over the network: news-app from 127.0.0.2 (cron\'s /32) is newsletter', async () => {
    const { upstream, gw } = await setup();
    const news = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, ignoreTLS: true, localAddress: '127.0.0.2', auth: { user: 'news-app', pass: PASSWORD } });
    track({ close: () => news.close() });
    await news.sendMail({ from: 'x@weekly.news.example.com', to: 'a@example.org', subject: 's', text: 'x' });
    expect(headerOf(upstream.messages[0].raw, 'X-SES-CONFIGURATION-SET')).toEqual(['newsletter']);
    expect(headerOf(upstream.messages[0].raw, 'X-SES-MESSAGE-TAGS')).toEqual([]);
  });

  it('without AUTH the longest network prefix wins: 127.0.0.2/32 is cron, 127.0.0.3 in 127.0.0.0/24 is newsletter', async () => {
    const { upstream, gw } = await setup();
    expect((await relay(await dial(gw, '127.0.0.2'), 'job@anything.example', ['a@example.org'])).code).toBe(250);
    expect((await relay(await dial(gw, '127.0.0.3'), 'x@weekly.news.example.com', ['a@example.org'])).code).toBe(250);
    // cron sets no SES settings: no X-SES header added
    expect(headerOf(upstream.messages[0].raw, 'X-SES-CONFIGURATION-SET')).toEqual([]);
    expect(headerOf(upstream.messages[1].raw, 'X-SES-CONFIGURATION-SET')).toEqual(['newsletter']);
    const text = await gw.metricsText();
    expect(text).toMatch(/application="cron",outcome="relayed"\} 1/);
    expect(text).toMatch(/application="newsletter",outcome="relayed"\} 1/);
  });

  it('unmatched: global relays under the global policy (label "unmatched"); refuse answers 550 5.7.1 at MAIL FROM', async () => {
    const global = await setup();
    expect((await relay(await dial(global.gw, '127.0.1.1'), 'a@any.example', ['b@example.org'])).code).toBe(250);
    expect(await global.gw.metricsText()).toMatch(/application="unmatched",outcome="relayed"\} 1/);

    const strict = await setup(APPLICATIONS, { applications: { unmatched: 'refuse' } });
    const reply = await relay(await dial(strict.gw, '127.0.1.1'), 'a@any.example', ['b@example.org']);
    expect(reply.text).toMatch(/^550 5\.7\.1 No application is configured for client 127\.0\.1\.1/);
    const stray = authed(strict.gw, 'stray-app');
    await expect(stray.sendMail({ from: 'a@any.example', to: 'b@example.org', text: 'x' })).rejects.toThrow(/550 5\.7\.1 No application is configured for user "stray-app"/);
    expect(strict.upstream.mailFroms).toEqual([]);
    expect(await strict.gw.metricsText()).toMatch(/smtp_gateway_messages_total\{outcome="rejected",reason="no_application"\} 2/);
  });
});

describe('the rules of an application', () => {
  it('senders: MAIL FROM and the header From outside the list are refused, nothing reaches the upstream', async () => {
    const { upstream, gw } = await setup();
    const billing = authed(gw, 'billing-app');
    await expect(billing.sendMail({ from: 'x@other.example', to: 'a@example.org', text: 'x' })).rejects.toThrow(
      /550 5\.7\.1 Sender <x@other\.example> is not allowed for application billing/,
    );
    await expect(
      billing.sendMail({ envelope: { from: 'noreply@example.com', to: ['a@example.org'] }, from: 'ceo@example.com', to: 'a@example.org', text: 'x' }),
    ).rejects.toThrow(/550 5\.7\.1 Header From <ceo@example\.com> is not allowed for application billing/);
    expect(upstream.messages).toEqual([]);
  });

  it('maxRecipients: the recipient past the application\'s limit gets 452 4.5.3, the others are relayed', async () => {
    const { upstream, gw } = await setup();
    const billing = authed(gw, 'billing-app');
    const info = await billing.sendMail({ from: 'noreply@example.com', to: ['a@example.org', 'b@example.org', 'c@example.org'], text: 'x' });
    expect(info.rejected).toEqual(['c@example.org']);
    expect(info.rejectedErrors?.[0]?.message).toMatch(/452 4\.5\.3 Too many recipients, at most 2 per message for application billing/);
    expect(upstream.messages[0].to).toEqual(['a@example.org', 'b@example.org']);
  });

  it('messagesPerMinute counts per application across its clients: the third message in a minute gets 451 4.7.1', async () => {
    const { upstream, gw } = await setup();
    expect((await relay(await dial(gw, '127.0.0.3'), 'a@x.news.example.com', ['a@example.org'])).code).toBe(250);
    expect((await relay(await dial(gw, '127.0.0.4'), 'a@x.news.example.com', ['a@example.org'])).code).toBe(250);
    const third = await relay(await dial(gw, '127.0.0.5'), 'a@x.news.example.com', ['a@example.org']);
    expect(third.text).toMatch(/^451 4\.7\.1 Message rate limit of application newsletter exceeded/);
    // another application is not limited by it
    expect((await relay(await dial(gw, '127.0.0.2'), 'a@x.example', ['a@example.org'])).code).toBe(250);
    expect(upstream.messages).toHaveLength(3);
  });

  it('a client\'s own X-SES-CONFIGURATION-SET or X-SES-MESSAGE-TAGS is refused, with an application or without', async () => {
    const { upstream, gw } = await setup();
    for (const [address, header] of [
      ['127.0.0.2', 'X-SES-CONFIGURATION-SET: billing-events\r\n'],
      ['127.0.1.1', 'x-ses-message-tags : app=billing\r\n'],
    ]) {
      const reply = await relay(await dial(gw, address), 'a@x.example', ['a@example.org'], `From: <a@x.example>\r\n${header}`);
      expect(reply.text).toMatch(/^550 5\.7\.1 Header x-ses-(configuration-set|message-tags) is set by the gateway/i);
    }
    expect(upstream.messages).toEqual([]);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_messages_total\{outcome="rejected",reason="ses_header"\} 2/);
  });
});

describe('reloading the applications file', () => {
  it('a changed file applies while mail flows (nothing lost); a bad one is logged, counted and the previous stays', async () => {
    const { upstream, volume, gw } = await setup();
    const billing = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, ignoreTLS: true, pool: true, maxConnections: 2, auth: { user: 'billing-app', pass: PASSWORD } });
    track({ close: () => billing.close() });
    const send = (i: number) => billing.sendMail({ from: 'noreply@example.com', to: 'a@example.org', subject: `m${i}`, text: 'x' });
    let sent = 0;
    let stop = false;
    const flow = (async () => {
      // bounded: at most 400 messages, and stopped once the reload was seen
      while (!stop && sent < 400) {
        await send(sent);
        sent++;
      }
    })();
    await eventually(() => sent >= 3, 'mail flowing before the reload');
    await volume.update({ 'applications.yaml': APPLICATIONS.replace('billing-events', 'billing-v2') });
    await eventually(() => upstream.messages.some((m) => headerOf(m.raw, 'X-SES-CONFIGURATION-SET')[0] === 'billing-v2'), 'a message with the new configuration set', 15_000);
    stop = true;
    await flow;
    expect(upstream.messages).toHaveLength(sent);
    const sets = upstream.messages.map((m) => headerOf(m.raw, 'X-SES-CONFIGURATION-SET')[0]);
    // every message carries exactly one of the two, old ones before new ones
    expect(sets.indexOf('billing-v2')).toBeGreaterThan(0);
    expect(sets.slice(sets.indexOf('billing-v2')).every((set) => set === 'billing-v2')).toBe(true);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_application_reloads_total\{result="success"\} 1/);

    await volume.update({ 'applications.yaml': 'applications:\n  - name: Billing\n    match: {}\n' });
    await eventually(async () => /smtp_gateway_application_reloads_total\{result="failure"\} 1/.test(await gw.metricsText()), 'the failed reload counted', 15_000);
    const failure = gw.logs.find((line) => line.msg === 'applications file reload failed');
    expect(String(failure?.err)).toMatch(/applications\[0\] \(Billing\)\.name: got "Billing"; expected 1-63 lower-case/);
    expect(String(failure?.err)).toMatch(/keeping the previous applications$/);
    await send(1000);
    expect(headerOf(upstream.messages.at(-1)!.raw, 'X-SES-CONFIGURATION-SET')).toEqual(['billing-v2']);
  });
});

describe('the applications file', () => {
  it('errors name the file, the entry and the key with the offending value', () => {
    const problems = (text: string) => {
      try {
        parseApplicationFile(text, 'apps.yaml');
      } catch (error) {
        expect(error).toBeInstanceOf(ApplicationFileError);
        return (error as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(problems('applications:\n  - name: a\n    match: { networks: [10.0.0.300/8] }\n')).toMatch(/^apps\.yaml: applications\[0\] \(a\)\.match\.networks\[0\]: got "10\.0\.0\.300\/8"; expected an IP address or CIDR/);
    expect(problems('applications:\n  - name: a\n    match: { users: [u] }\n    senders: ["not a domain"]\n')).toMatch(/applications\[0\] \(a\)\.senders\[0\]: got "not a domain"/);
    expect(problems('applications:\n  - name: a\n    match: { users: [u] }\n    ses: { tags: { "bad tag": x } }\n')).toMatch(/ses\.tags\.bad tag: got the key "bad tag"; expected only ASCII letters/);
    expect(problems('applications:\n  - name: a\n    match: { users: [u] }\n  - name: b\n    match: { users: [u] }\n')).toMatch(/applications\[1\] \(b\)\.match\.users\[0\]: got "u"; user "u" is already used by application "a"/);
    expect(problems('applications:\n  - name: unmatched\n    match: { users: [u] }\n')).toMatch(/"unmatched" is the label of sessions that match no application/);
    expect(problems('applications:\n  - name: a\n    match: { users: [u] }\n    rate: 5\n')).toMatch(/applications\[0\] \(a\): unknown key "rate"/);
    expect(problems('applications: [')).toMatch(/^apps\.yaml: not YAML/);
  });

  it('a missing or invalid file stops the start, naming applications.file; refuse without a file is a config error', async () => {
    await expect(startTestGateway({ applications: { file: '/nonexistent/applications.yaml' } })).rejects.toThrow(
      /applications\.file "\/nonexistent\/applications\.yaml": Cannot read applications file/,
    );
    await expect(startTestGateway({ applications: { unmatched: 'refuse' } })).rejects.toThrow(/applications\.unmatched: got "refuse"; applications\.unmatched is refuse, so applications\.file must name/);
  });

  it('the application label takes only configured names and "unmatched", whatever clients send', async () => {
    const { gw } = await setup();
    for (let i = 0; i < 5; i++) await relay(await dial(gw, `127.0.${i + 1}.9`), `user${i}@random${i}.example`, [`r${i}@example.org`]);
    const stray = authed(gw, 'stray-app');
    await stray.sendMail({ from: 'x@y.example', to: 'z@example.org', text: 'x' });
    const labels = new Set([...(await gw.metricsText()).matchAll(/smtp_gateway_application_messages_total\{application="([^"]*)"/g)].map((m) => m[1]));
    expect([...labels]).toEqual(['unmatched']);
  });
});
