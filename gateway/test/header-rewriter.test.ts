/**
 * The header rewriter and the reply mapping on their own: every way a header
 * block can arrive in chunks, and every kind of upstream outcome.
 */
import { describe, expect, it } from 'vitest';
import { HeaderRewriter, HeaderTooLargeError, foldHeader, rfc5322Date, rfc5322DateNow } from '../src/relay/header-rewriter';
import { acceptedReply, failedReply, queueId, replyText } from '../src/relay/reply-mapping';

/** The rewriter's output for `chunks`; a promise, so a thrown refusal reads as a rejection. */
async function rewrite(chunks: string[], options: Partial<ConstructorParameters<typeof HeaderRewriter>[0]> = {}) {
  const rewriter = new HeaderRewriter({ received: 'from test by gw', messageIdDomain: 'gw.test', ...options });
  const out: Buffer[] = [];
  const emit = (chunk: Buffer) => out.push(chunk);
  for (const chunk of chunks) rewriter.write(Buffer.from(chunk), emit);
  rewriter.end(emit);
  const text = Buffer.concat(out);
  expect(rewriter.bytesOut).toBe(text.length);
  return text.toString();
}

const MESSAGE = 'From: a@example.com\r\nSubject: s\r\nMessage-ID: <m@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n\r\nmore\r\n';

describe('foldHeader and rfc5322DateNow', () => {
  it('folds at the last space that keeps a line within 76 characters, and unfolds to the value', () => {
    expect(foldHeader('Subject', 'short')).toBe('Subject: short');
    const value = Array.from({ length: 40 }, (_, i) => `word${i}`.padEnd(3 + (i % 9), 'x')).join(' ');
    const folded = foldHeader('Received', value);
    const lines = folded.split('\r\n');
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.every((line) => line.length <= 76)).toBe(true);
    expect(lines.slice(1).every((line) => line.startsWith(' '))).toBe(true);
    expect(folded.replace(/\r\n /g, ' ')).toBe(`Received: ${value}`);
    // a word longer than a line stays whole on its own line; CR and LF in the value never reach the header
    expect(foldHeader('X', `a ${'b'.repeat(100)} c\r\nd`)).toBe(`X: a\r\n ${'b'.repeat(100)}\r\n c d`);
  });

  it('dates now, in RFC 5322 form, the same text within one second', () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    const text = rfc5322DateNow();
    expect(text).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
    const dated = Date.parse(text.replace('+0000', 'GMT'));
    expect(dated).toBeGreaterThanOrEqual(before);
    expect(dated).toBeLessThanOrEqual(Date.now());
    expect(text === rfc5322Date(new Date(dated))).toBe(true);
  });
});

describe('HeaderRewriter', () => {
  it('prepends Received and leaves the rest byte for byte, however the input is split', async () => {
    const expected = `Received: from test by gw\r\n${MESSAGE}`;
    expect(await rewrite([MESSAGE])).toBe(expected);
    for (let cut = 1; cut < MESSAGE.length; cut++) {
      expect(await rewrite([MESSAGE.slice(0, cut), MESSAGE.slice(cut)])).toBe(expected);
    }
    expect(await rewrite(MESSAGE.split(''))).toBe(expected);
  });

  it('adds Message-ID and Date when missing, at the end of the header block', async () => {
    const out = await rewrite(['Subject: s\r\n\r\nbody\r\n']);
    expect(out).toMatch(/^Received: from test by gw\r\nSubject: s\r\nMessage-ID: <[0-9a-f-]+@gw\.test>\r\nDate: \w{3}, \d+ \w{3} \d{4} [\d:]{8} \+0000\r\n\r\nbody\r\n$/);
  });

  it('a message with headers only (no empty line) and one with no headers at all', async () => {
    expect(await rewrite(['Subject: only\r\nMessage-ID: <a@b>\r\nDate: x\r\n'])).toBe('Received: from test by gw\r\nSubject: only\r\nMessage-ID: <a@b>\r\nDate: x\r\n\r\n');
    const bare = await rewrite(['\r\njust a body\r\n']);
    expect(bare).toMatch(/^Received: from test by gw\r\nMessage-ID: <[^>]+>\r\nDate: [^\r]+\r\n\r\njust a body\r\n$/);
  });

  it('fails with HeaderTooLargeError past maxHeaderBytes, without waiting for the end', async () => {
    const rewriter = new HeaderRewriter({ received: 'r', messageIdDomain: 'd', maxHeaderBytes: 1024 });
    expect(() => rewriter.write(Buffer.from(`X-Long: ${'a'.repeat(2000)}\r\n`), () => undefined)).toThrow(HeaderTooLargeError);
  });

  it('a refusal from inspect fails the stream with it', async () => {
    const refusal = new Error('no');
    await expect(rewrite([MESSAGE], { inspect: () => refusal })).rejects.toBe(refusal);
  });

  it('parses the header block only when there is a check to run, with the same result either way', async () => {
    const inspected = await rewrite([MESSAGE], { inspect: () => undefined });
    expect(inspected).toBe(await rewrite([MESSAGE]));
    const long = 'from a-very-long-client-name.apps.internal.example.com (unknown [10.11.12.13]) by gateway.example.com (smtp-gateway) with ESMTPSA id abcdef.1; Fri, 27 Nov 2026 09:05:07 +0000';
    for (const out of [await rewrite([MESSAGE], { received: long }), await rewrite([MESSAGE], { received: long, inspect: () => undefined })]) {
      const received = out.slice(0, out.indexOf('\r\nFrom:'));
      expect(received.split('\r\n').every((line) => line.length <= 78)).toBe(true);
      expect(received.replace(/\r\n /g, ' ')).toBe(`Received: ${long}`);
    }
  });

  it('formats dates as RFC 5322 with +0000', () => {
    expect(rfc5322Date(new Date(Date.UTC(2026, 10, 27, 9, 5, 7)))).toBe('Fri, 27 Nov 2026 09:05:07 +0000');
  });
});

describe('reply mapping', () => {
  it('250: the queue id out of Postfix, SES and other replies', () => {
    expect(queueId('2.0.0 Ok: queued as 4Fx9K2')).toBe('4Fx9K2');
    expect(queueId('Ok 0100018b5c3c0a4f-1234-000000')).toBe('0100018b5c3c0a4f-1234-000000');
    expect(acceptedReply({ response: '250 Ok 0100018b5c3c0a4f-1234-000000', rejected: [] }).reply).toEqual({ code: 250, status: '2.0.0', text: 'Ok: queued as 0100018b5c3c0a4f-1234-000000' });
  });

  it('5xx keeps the code and enhanced status, trims and sanitises the reason', () => {
    const result = failedReply({ code: 'EMESSAGE', responseCode: 554, response: `554 5.7.1 Message rejected: ${'x'.repeat(500)}\r\nsecond line` });
    expect(result).toMatchObject({ labels: { outcome: 'rejected', reason: 'upstream_permanent' }, upstream: { label: '554' } });
    expect(result.reply.code).toBe(554);
    expect(result.reply.status).toBe('5.7.1');
    expect(result.reply.text.length).toBeLessThanOrEqual(230);
    expect(result.reply.text).not.toMatch(/[\r\n]/);
  });

  it('4xx, timeouts, refused and dropped connections, bad credentials all become 451', () => {
    expect(failedReply({ code: 'EMESSAGE', responseCode: 452, response: '452 4.3.1 Insufficient system storage' }).reply).toMatchObject({ code: 451, status: '4.3.1' });
    expect(failedReply({ code: 'ETIMEDOUT', message: 'Timeout' })).toMatchObject({ labels: { reason: 'upstream_timeout' }, upstream: { label: 'timeout' }, reply: { code: 451 } });
    expect(failedReply({ code: 'ESOCKET', message: 'connect ECONNREFUSED 127.0.0.1:1' })).toMatchObject({ labels: { reason: 'upstream_connection' }, reply: { code: 451, status: '4.4.1' } });
    expect(failedReply({ code: 'ECONNECTION', message: 'Connection closed unexpectedly' })).toMatchObject({ labels: { reason: 'upstream_connection' }, reply: { code: 451, status: '4.4.2' } });
    expect(failedReply({ code: 'EAUTH', responseCode: 535, response: '535 Authentication Credentials Invalid' })).toMatchObject({ reply: { code: 451 } });
    expect(failedReply({ message: 'something odd' }).reply.code).toBe(451);
    // a code outside 200-599 is no reply code: counted as protocol_error, never as a label of its own
    expect(failedReply({ code: 'EPROTOCOL', responseCode: 999, response: '999 what' })).toMatchObject({ reply: { code: 451 }, upstream: { label: 'protocol_error' } });
  });

  it('replyText strips codes and keeps printable ASCII only', () => {
    expect(replyText('550-5.1.1 first\r\n550 5.1.1 second')).toEqual({ status: '5.1.1', text: 'first second' });
    expect(replyText('451 caf\u00e9').text).toBe('caf?');
  });
});
