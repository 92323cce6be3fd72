/**
 * The contract between relay/upstream-parameters.ts and the installed
 * nodemailer release: the internals the adapter patches exist, and through the
 * gateway's real upstream transport (relay/smtp-upstream.ts) a real smtp-server
 * receives exactly the parameters given, in place of nodemailer's own choice,
 * or no MAIL FROM at all when its EHLO lacks a needed extension. A nodemailer
 * upgrade that moves these internals fails here (and the gateway refuses to
 * start, rather than drop parameters).
 */
import { describe, expect, it } from 'vitest';
import { createSmtpUpstream } from '../src/relay/smtp-upstream';
import { bufferedMessage } from '../src/relay/spool';
import { commandWithParameters, type EnvelopeParameters, xtext } from '../src/relay/upstream-parameters';
import { closeAfterEach } from './helpers/close-after-each';
import { testConfig } from './helpers/test-gateway';
import { startTestUpstream, type TestUpstreamOptions } from './helpers/test-upstream';

const track = closeAfterEach();
const MESSAGE = 'From: <app@example.com>\r\nSubject: t\r\n\r\nhello\r\n';

async function send(parameters: EnvelopeParameters | undefined, to: string[], upstreamOptions: TestUpstreamOptions = { ehlo: { hideDSN: false } }) {
  const upstream = track(await startTestUpstream(upstreamOptions));
  const transport = createSmtpUpstream(testConfig({ upstreamPort: upstream.port }).upstream);
  track({ close: () => transport.close(true) });
  const sent = transport.send({ from: 'app@example.com', to, parameters }, bufferedMessage(Buffer.from(MESSAGE)), new AbortController().signal);
  return { upstream, result: await sent.then((info) => ({ info }), (err: Error & { responseCode?: number }) => ({ err })) };
}

describe('the parameters reach a real server exactly', () => {
  it('replace what nodemailer would send: SMTPUTF8 for an ASCII envelope, BODY, DSN per recipient', async () => {
    const parameters: EnvelopeParameters = {
      body: '8BITMIME',
      smtpUtf8: true,
      ret: 'FULL',
      envid: 'id with space+plus',
      recipients: new Map([['a@example.org', { notify: 'DELAY', orcpt: 'rfc822;a=1@example.org' }]]),
    };
    const { upstream, result } = await send(parameters, ['a@example.org', 'b@example.org']);
    expect(result).toHaveProperty('info');
    expect(upstream.messages[0].mailArgs).toEqual({ BODY: '8BITMIME', SMTPUTF8: true, RET: 'FULL', ENVID: 'id with space+plus' });
    expect(upstream.messages[0].rcptArgs).toEqual([{ NOTIFY: 'DELAY', ORCPT: 'rfc822;a=1@example.org' }, {}]);
  });

  it('a message without parameters goes out with none, as before', async () => {
    const { upstream, result } = await send(undefined, ['a@example.org']);
    expect(result).toHaveProperty('info');
    expect(upstream.messages[0].mailArgs).toEqual({});
    expect(upstream.messages[0].rcptArgs).toEqual([{}]);
  });

  it('an extension missing from the EHLO fails the send with 451 before MAIL FROM', async () => {
    const { upstream, result } = await send({ ret: 'HDRS' }, ['a@example.org'], {});
    expect(result).toHaveProperty('err');
    expect((result as { err: Error & { responseCode?: number } }).err.responseCode).toBe(451);
    expect((result as { err: Error }).err.message).toMatch(/did not offer DSN/);
    expect(upstream.mailFroms).toHaveLength(0);
  });
});

describe('command lines and xtext', () => {
  it('only MAIL FROM and RCPT TO lines change, and nodemailer parameters are replaced, not appended to', () => {
    const parameters: EnvelopeParameters = { body: '7BIT', recipients: new Map([['x@example.org', { notify: 'NEVER' }]]) };
    expect(commandWithParameters('MAIL FROM:<a@example.com> SMTPUTF8 BODY=8BITMIME', parameters)).toBe('MAIL FROM:<a@example.com> BODY=7BIT');
    expect(commandWithParameters('RCPT TO:<x@example.org>', parameters)).toBe('RCPT TO:<x@example.org> NOTIFY=NEVER');
    expect(commandWithParameters('RCPT TO:<y@example.org>', parameters)).toBe('RCPT TO:<y@example.org>');
    expect(commandWithParameters('RSET', parameters)).toBe('RSET');
  });

  it('xtext encodes "+", "=", spaces, controls and non-ASCII as +XX (RFC 3461 section 4)', () => {
    expect(xtext('a+b=c d\r\nü')).toBe('a+2Bb+3Dc+20d+0D+0A+C3+BC');
    expect(xtext('plain-ASCII!~')).toBe('plain-ASCII!~');
  });
});
