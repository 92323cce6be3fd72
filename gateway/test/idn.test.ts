/**
 * Internationalised domains and addresses (issue 9, section 4), over real SMTP
 * with real upstreams (smtp-server with and without SMTPUTF8): every domain is
 * compared in one canonical form (IDNA to ASCII, lower case, no trailing dot),
 * config takes either spelling, an ASCII address leaves in ASCII, SMTPUTF8 goes
 * upstream only when the client used it, and what needs SMTPUTF8 is refused
 * with 553/550 5.6.7 when the upstream lacks it (RFC 6531).
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load';
import { canonicalDomain } from '../src/smtp/domains';
import { closeAfterEach } from '../../testkit/close-after-each';
import { messageData, rawTransaction, type RawTransactionOptions } from '../../testkit/raw-transaction';
import { startSmtpSink } from '../../testkit/smtp-sink';
import { startTestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstreamOptions } from '../../testkit/recording-upstream';

const track = closeAfterEach();

async function relay(message: RawTransactionOptions, options: TestGatewayOptions = {}, upstreamOptions: RecordingUpstreamOptions = {}) {
  const upstream = track(await startRecordingUpstream(upstreamOptions));
  const gw = track(await startTestGateway({ upstreamPort: upstream.port, ...options }));
  return { ...(await rawTransaction({ port: gw.relayPort }, message)), upstream };
}

const message = (mail: string, rcpts: string[], headers: string[] = ['From: <app@example.com>', 'Subject: t'], body?: string): RawTransactionOptions => ({ mail, rcpts, data: messageData(headers, body) });

describe('one canonical form for every domain', () => {
  it('canonicalDomain answers the same when asked again (it remembers), for valid, invalid and literal domains', () => {
    for (let round = 0; round < 2; round++) {
      expect(canonicalDomain('Bücher.Example.')).toBe('xn--bcher-kva.example');
      expect(canonicalDomain('bad_domain..example')).toBeUndefined();
      expect(canonicalDomain('[IPv6:2001:DB8::1]')).toBe('[ipv6:2001:db8::1]');
    }
    // more distinct domains than it remembers: each still gets its own answer
    for (let i = 0; i < 5000; i++) expect(canonicalDomain(`Host${i}.Example`)).toBe(`host${i}.example`);
    expect(canonicalDomain('Bücher.Example.')).toBe('xn--bcher-kva.example');
  });

  it('config takes Unicode or A-labels, any case, a trailing dot, and stores the canonical A-label form', () => {
    const upstream = { host: 'smtp.example.com' };
    const config = validateConfig({ upstream, policy: { senderDomains: ['München.Example.', 'xn--mnchen-3ya.example'], recipientDomains: { deny: ['*.Bücher.example'] } } });
    expect(config.policy.senderDomains).toEqual(['xn--mnchen-3ya.example', 'xn--mnchen-3ya.example']);
    expect(config.policy.recipientDomains.deny).toEqual(['*.xn--bcher-kva.example']);
    expect(() => validateConfig({ upstream, policy: { senderDomains: ['bad..example'] } })).toThrow(/policy\.senderDomains\.0: got "bad\.\.example"; expected a domain name/);
  });

  it('recipientDomains.deny as an A-label stops RCPT TO in either spelling (550 5.7.1); nothing relayed', async () => {
    for (const denied of ['xn--bcher-kva.example', 'bücher.example']) {
      for (const rcpt of ['RCPT TO:<user@xn--bcher-kva.example>', 'RCPT TO:<user@XN--BCHER-KVA.example>', 'RCPT TO:<user@bücher.example>']) {
        const { final, upstream } = await relay(message('MAIL FROM:<app@example.com> SMTPUTF8', [rcpt]), {
          policy: { recipientDomains: { deny: [denied] } },
          upstream: { extensions: ['8BITMIME', 'SMTPUTF8'] },
        });
        expect(final?.text, `${denied} / ${rcpt}`).toMatch(/^550 5\.7\.1 Recipient domain of <user@xn--bcher-kva\.example> is not allowed/);
        expect(upstream.mailFroms).toHaveLength(0);
      }
    }
  });

  it('a sender allowed as an A-label relays, and the addresses reach Postfix smtp-sink in ASCII, without SMTPUTF8', async () => {
    const sink = track(await startSmtpSink({ dump: 'per-transaction' }));
    const gw = track(await startTestGateway({ upstreamPort: sink.port, policy: { senderDomains: ['münchen.example'] } }));
    const headers = ['From: App <app@xn--mnchen-3ya.example>', 'Subject: t'];
    const { final } = await rawTransaction({ port: gw.relayPort }, message('MAIL FROM:<app@xn--mnchen-3ya.example>', ['RCPT TO:<user@xn--bcher-kva.example>'], headers));
    expect(final?.text).toMatch(/^250 /);
    // smtp-sink writes the MAIL and RCPT arguments as they came (smtp-server would decode the A-labels)
    const dumps = await sink.dumps();
    expect(dumps).toHaveLength(1);
    expect(dumps[0]).toMatch(/^X-Mail-Args: <app@xn--mnchen-3ya\.example>$/m);
    expect(dumps[0]).toMatch(/^X-Rcpt-Args: <user@xn--bcher-kva\.example>$/m);
    expect(dumps[0]).toContain('From: App <app@xn--mnchen-3ya.example>');
  });

  it('a Unicode domain from a client without SMTPUTF8 goes upstream as its A-label, not in UTF-8', async () => {
    const sink = track(await startSmtpSink({ dump: 'per-transaction' }));
    const gw = track(await startTestGateway({ upstreamPort: sink.port }));
    const { final } = await rawTransaction({ port: gw.relayPort }, message('MAIL FROM:<app@example.com>', ['RCPT TO:<user@Bücher.example>']));
    expect(final?.text).toMatch(/^250 /);
    expect((await sink.dumps())[0]).toMatch(/^X-Rcpt-Args: <user@xn--bcher-kva\.example>$/m);
  });
});

describe('SMTPUTF8 upstream only when the client used it', () => {
  const withSmtpUtf8: TestGatewayOptions = { upstream: { extensions: ['8BITMIME', 'SMTPUTF8'] } };

  it('a client that used SMTPUTF8 with ASCII addresses and UTF-8 headers: SMTPUTF8 reaches the upstream', async () => {
    const { final, upstream } = await relay(message('MAIL FROM:<app@example.com> SMTPUTF8', ['RCPT TO:<user@example.org>'], ['From: Jürgen <app@example.com>', 'Subject: Grüße']), withSmtpUtf8);
    expect(final?.text).toMatch(/^250 /);
    expect(upstream.messages[0].mailArgs).toEqual({ SMTPUTF8: true });
    expect(upstream.messages[0].raw.toString('utf8')).toContain('Subject: Grüße');
  });

  it('a client that did not use it: none goes upstream, not even for a Unicode domain (sent as an A-label)', async () => {
    const { final, upstream } = await relay(message('MAIL FROM:<app@example.com>', ['RCPT TO:<user@bücher.example>']), withSmtpUtf8);
    expect(final?.text).toMatch(/^250 /);
    expect(upstream.messages[0].mailArgs).toEqual({});
  });

  it('a UTF-8 local part needs SMTPUTF8 (553 5.6.7 at MAIL FROM without it); with it, it relays as is', async () => {
    const refused = await relay(message('MAIL FROM:<jürgen@example.com>', ['RCPT TO:<user@example.org>']), withSmtpUtf8);
    expect(refused.final?.text).toMatch(/^553 5\.6\.7 Address <j\?rgen@example\.com> is not ASCII without SMTPUTF8/);
    expect(refused.upstream.mailFroms).toHaveLength(0);
    const relayed = await relay(message('MAIL FROM:<jürgen@example.com> SMTPUTF8', ['RCPT TO:<ärzte@bücher.example>']), withSmtpUtf8);
    expect(relayed.final?.text).toMatch(/^250 /);
    expect(relayed.upstream.messages[0]).toMatchObject({ from: 'jürgen@example.com', to: ['ärzte@bücher.example'], mailArgs: { SMTPUTF8: true } });
  });
});

describe('an upstream without SMTPUTF8 (RFC 6531 refusals)', () => {
  const noSmtpUtf8: RecordingUpstreamOptions = { ehlo: { hideSMTPUTF8: true } };

  it('SMTPUTF8 is not advertised, and the parameter is refused with 555 5.5.4', async () => {
    const { ehlo, final, upstream } = await relay(message('MAIL FROM:<app@example.com> SMTPUTF8', ['RCPT TO:<user@example.org>']), {}, noSmtpUtf8);
    expect(ehlo?.text).not.toMatch(/SMTPUTF8/);
    expect(final?.text).toMatch(/^555 5\.5\.4 Parameter SMTPUTF8 is not supported here/);
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('a UTF-8 local part at RCPT TO: 553 5.6.7 naming the upstream', async () => {
    const { final, upstream } = await relay(message('MAIL FROM:<app@example.com>', ['RCPT TO:<ärzte@example.org>']), {}, noSmtpUtf8);
    expect(final?.text).toMatch(/^553 5\.6\.7 .*the upstream does not offer SMTPUTF8/);
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('UTF-8 header fields, known only after the data: 550 5.6.7, and the upstream receives nothing', async () => {
    const { final, upstream } = await relay(message('MAIL FROM:<app@example.com>', ['RCPT TO:<user@example.org>'], ['From: <app@example.com>', 'Subject: Grüße']), {}, noSmtpUtf8);
    expect(final?.text).toMatch(/^550 5\.6\.7 Message header fields are not ASCII, and the upstream does not offer SMTPUTF8/);
    expect(upstream.messages).toHaveLength(0);
    expect(upstream.attempts.every((attempt) => !attempt.completed && attempt.bytes === 0)).toBe(true);
  });

  it('a UTF-8 body with ASCII headers still relays (8BITMIME, not SMTPUTF8)', async () => {
    const { final, upstream } = await relay(message('MAIL FROM:<app@example.com> BODY=8BITMIME', ['RCPT TO:<user@example.org>'], undefined, 'Grüße'), {}, noSmtpUtf8);
    expect(final?.text).toMatch(/^250 /);
    expect(upstream.messages[0].mailArgs).toEqual({ BODY: '8BITMIME' });
  });

  it('upstream.extensions claims SMTPUTF8 the upstream lacks: 451 4.3.0 naming the key, never sent without it', async () => {
    const { final, upstream } = await relay(message('MAIL FROM:<app@example.com> SMTPUTF8', ['RCPT TO:<user@example.org>']), { upstream: { extensions: ['8BITMIME', 'SMTPUTF8'] } }, noSmtpUtf8);
    expect(final?.text).toMatch(/^451 4\.3\.0 .*did not offer SMTPUTF8 .*upstream\.extensions/);
    expect(upstream.mailFroms).toHaveLength(0);
  });
});
