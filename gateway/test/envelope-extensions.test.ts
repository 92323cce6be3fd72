/**
 * Envelope extensions (issue 9, section 5), over real SMTP with a real upstream
 * (smtp-server, recording the parameters it received): the gateway advertises
 * what upstream.extensions lists and forwards those parameters exactly, per
 * recipient for DSN; every parameter it does not advertise is refused with
 * 555 5.5.4 (RFC 5321 section 4.1.1.11), REQUIRETLS included; a listed
 * extension the upstream does not offer fails the message (451), never drops
 * the parameter.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { messageData, rawTransaction, type RawTransactionOptions } from '../../testkit/raw-transaction';
import { openConnection } from '../../testkit/smtp-client';
import { startTestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstreamOptions } from '../../testkit/recording-upstream';

const track = closeAfterEach();
const HEADERS = ['From: <app@example.com>', 'Subject: t'];
const ALL: TestGatewayOptions = { upstream: { extensions: ['8BITMIME', 'SMTPUTF8', 'DSN'] } };
const UPSTREAM_WITH_DSN: RecordingUpstreamOptions = { ehlo: { hideDSN: false } };

async function setup(options: TestGatewayOptions = {}, upstreamOptions: RecordingUpstreamOptions = {}) {
  const upstream = track(await startRecordingUpstream(upstreamOptions));
  const gw = track(await startTestGateway({ upstreamPort: upstream.port, ...options }));
  return { upstream, gw };
}

async function relay(mail: string, rcpts: string[], options: TestGatewayOptions = {}, upstreamOptions: RecordingUpstreamOptions = {}) {
  const { upstream, gw } = await setup(options, upstreamOptions);
  const message: RawTransactionOptions = { mail, rcpts, data: messageData(HEADERS) };
  return { ...(await rawTransaction({ port: gw.relayPort }, message)), upstream, gw };
}

const ehloKeywords = (text: string) => text.split('\n').map((line) => line.slice(4).split(' ')[0]);

describe('what the EHLO advertises follows upstream.extensions', () => {
  it('by default 8BITMIME only: no SMTPUTF8, DSN or REQUIRETLS', async () => {
    const { ehlo } = await relay('MAIL FROM:<app@example.com>', ['RCPT TO:<user@example.org>']);
    const keywords = ehloKeywords(ehlo?.text ?? '');
    expect(keywords).toEqual(expect.arrayContaining(['8BITMIME', 'SIZE', 'PIPELINING']));
    for (const hidden of ['SMTPUTF8', 'DSN', 'REQUIRETLS']) expect(keywords).not.toContain(hidden);
  });

  it('with 8BITMIME, SMTPUTF8 and DSN listed, all three', async () => {
    const { ehlo } = await relay('MAIL FROM:<app@example.com>', ['RCPT TO:<user@example.org>'], ALL, UPSTREAM_WITH_DSN);
    expect(ehloKeywords(ehlo?.text ?? '')).toEqual(expect.arrayContaining(['8BITMIME', 'SMTPUTF8', 'DSN']));
  });
});

describe('advertised parameters are forwarded exactly', () => {
  it('BODY=8BITMIME and BODY=7BIT reach the upstream', async () => {
    for (const body of ['8BITMIME', '7BIT']) {
      const { final, upstream } = await relay(`MAIL FROM:<app@example.com> BODY=${body}`, ['RCPT TO:<user@example.org>']);
      expect(final?.text).toMatch(/^250 /);
      expect(upstream.messages[0].mailArgs).toEqual({ BODY: body });
    }
  });

  it('DSN: RET and ENVID on MAIL FROM, NOTIFY and ORCPT per recipient, xtext round trip included', async () => {
    const { final, upstream } = await relay(
      'MAIL FROM:<app@example.com> RET=HDRS ENVID=order+2B42=x',
      ['RCPT TO:<a@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Btag@example.org', 'RCPT TO:<b@example.org> NOTIFY=NEVER', 'RCPT TO:<c@example.org>'],
      ALL,
      UPSTREAM_WITH_DSN,
    );
    expect(final?.text).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].mailArgs).toEqual({ RET: 'HDRS', ENVID: 'order+42=x' });
    expect(upstream.messages[0].rcptArgs).toEqual([{ NOTIFY: 'SUCCESS,FAILURE', ORCPT: 'rfc822;a+tag@example.org' }, { NOTIFY: 'NEVER' }, {}]);
  });

  it('SIZE is checked here and not forwarded (hop by hop)', async () => {
    const { final, upstream } = await relay('MAIL FROM:<app@example.com> SIZE=100', ['RCPT TO:<user@example.org>']);
    expect(final?.text).toMatch(/^250 /);
    expect(upstream.messages[0].mailArgs).toEqual({});
  });
});

describe('parameters not advertised: 555 5.5.4, nothing relayed', () => {
  const CASES: Array<[string, string, string[]]> = [
    ['RET (DSN not listed)', 'MAIL FROM:<app@example.com> RET=FULL', ['RCPT TO:<user@example.org>']],
    ['ENVID (DSN not listed)', 'MAIL FROM:<app@example.com> ENVID=x1', ['RCPT TO:<user@example.org>']],
    ['NOTIFY (DSN not listed)', 'MAIL FROM:<app@example.com>', ['RCPT TO:<user@example.org> NOTIFY=SUCCESS']],
    ['ORCPT (DSN not listed)', 'MAIL FROM:<app@example.com>', ['RCPT TO:<user@example.org> ORCPT=rfc822;user@example.org']],
    ['an unknown MAIL FROM parameter', 'MAIL FROM:<app@example.com> XVERP', ['RCPT TO:<user@example.org>']],
    ['an unknown RCPT TO parameter', 'MAIL FROM:<app@example.com>', ['RCPT TO:<user@example.org> FOO=bar']],
    ['AUTH= while AUTH is not offered', 'MAIL FROM:<app@example.com> AUTH=<>', ['RCPT TO:<user@example.org>']],
  ];
  for (const [what, mail, rcpts] of CASES) {
    it(what, async () => {
      const { final, upstream, gw } = await relay(mail, rcpts);
      expect(final?.text).toMatch(/^555 5\.5\.4 Parameter [A-Z]+ is not supported here/);
      expect(upstream.mailFroms).toHaveLength(0);
      expect(await gw.metricsText()).toMatch(/smtp_gateway_(messages|recipients)_total\{outcome="rejected"(,reason="unsupported_parameter")?\} 1/);
    });
  }

  describe('REQUIRETLS (never advertised: the gateway cannot promise TLS on later hops)', () => {
    let certs: TestCertificates;
    beforeAll(async () => {
      certs = await makeTestCertificates();
    });

    it('after STARTTLS: 555 5.5.4, and no message goes upstream in clear or otherwise', async () => {
      const { upstream, gw } = await setup({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } });
      const connection = track(await openConnection(gw.relayPort));
      expect((await connection.command('EHLO client.test')).text).toMatch(/STARTTLS/);
      expect((await connection.command('STARTTLS')).code).toBe(220);
      await connection.startTls(certs.ca);
      expect(ehloKeywords((await connection.command('EHLO client.test')).text)).not.toContain('REQUIRETLS');
      expect((await connection.command('MAIL FROM:<app@example.com> REQUIRETLS')).text).toMatch(/^555 5\.5\.4 Parameter REQUIRETLS is not supported here/);
      expect(upstream.mailFroms).toHaveLength(0);
    });

    it('on a plain connection: refused (smtp-server answers 530 before the gateway sees it)', async () => {
      const { final, upstream } = await relay('MAIL FROM:<app@example.com> REQUIRETLS', ['RCPT TO:<user@example.org>']);
      expect(final?.code).toBeGreaterThanOrEqual(500);
      expect(upstream.mailFroms).toHaveLength(0);
    });
  });
});

describe('a listed extension the upstream does not offer: 451, never sent without it', () => {
  it('DSN listed, upstream hides DSN: 451 4.3.0 naming upstream.extensions; the upstream saw no MAIL FROM; the error is logged', async () => {
    const { final, upstream, gw } = await relay('MAIL FROM:<app@example.com> RET=FULL', ['RCPT TO:<user@example.org> NOTIFY=FAILURE'], ALL);
    expect(final?.text).toMatch(/^451 4\.3\.0 .*did not offer DSN .*upstream\.extensions/);
    expect(upstream.mailFroms).toHaveLength(0);
    expect(gw.logText()).toMatch(/did not offer DSN/);
  });

  it('8BITMIME listed, upstream hides it: BODY=8BITMIME gets 451; a message without BODY still relays on the same upstream', async () => {
    const { upstream, gw } = await setup({}, { ehlo: { hide8BITMIME: true } });
    const refused = await rawTransaction({ port: gw.relayPort }, { mail: 'MAIL FROM:<app@example.com> BODY=8BITMIME', rcpts: ['RCPT TO:<user@example.org>'], data: messageData(HEADERS) });
    expect(refused.final?.text).toMatch(/^451 4\.3\.0 .*did not offer 8BITMIME/);
    const plain = await rawTransaction({ port: gw.relayPort }, { mail: 'MAIL FROM:<app@example.com>', rcpts: ['RCPT TO:<user@example.org>'], data: messageData(HEADERS) });
    expect(plain.final?.text).toMatch(/^250 /);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].mailArgs).toEqual({});
  });
});
