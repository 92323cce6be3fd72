/**
 * The header From read strictly (issue 9, section 3), over real SMTP with
 * policy.senderDomains [good.example]: every From a reader downstream could
 * see counts, and a From that a strict RFC 5322 parser and the domain check
 * would not read alike is refused with 550 5.7.1 naming why. The upstream must
 * receive nothing of a refused message.
 */
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { messageData, rawTransaction } from '../../testkit/raw-transaction';
import { startTestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream } from '../../testkit/recording-upstream';

const track = closeAfterEach();

async function send(headers: string[]) {
  const upstream = track(await startRecordingUpstream());
  const gw = track(await startTestGateway({ upstreamPort: upstream.port, policy: { senderDomains: ['good.example'] } }));
  const result = await rawTransaction({ port: gw.relayPort }, { mail: 'MAIL FROM:<app@good.example>', rcpts: ['RCPT TO:<user@example.org>'], data: messageData([...headers, 'Subject: t']) });
  return { reply: result.final, upstream, gw };
}

const REFUSED: Array<[string, string[], RegExp]> = [
  ['an obs-syntax From on the first line (an mbox separator to mailsplit) beside a good one', ['From : <evil@bad.example>', 'From: <app@good.example>'], /2 From headers/],
  ['the same in lower case without a space after the colon', ['from :evil@bad.example', 'From: <app@good.example>'], /2 From headers/],
  ['a From indented on the first line (no field to fold into) beside a good one', [' From: <evil@bad.example>', 'From: <app@good.example>'], /2 From headers/],
  ['two plain From headers', ['From: <app@good.example>', 'From: <evil@bad.example>'], /2 From headers/],
  ['a quoted-pair that makes the check read good.example', ['From: evil@bad.example\\@good.example'], /not a valid RFC 5322 mailbox list/],
  ['a display name that is itself an address, unquoted', ['From: evil@bad.example <app@good.example>'], /not a valid RFC 5322 mailbox list/],
  ['a display name that is itself an address, quoted', ['From: "evil@bad.example" <app@good.example>'], /display name .* looks like an address/],
  ['group syntax', ['From: friends: app@good.example;'], /not a valid RFC 5322 mailbox list/],
  ['an address in a comment', ['From: app@good.example (evil@bad.example)'], /has a comment/],
  ['an encoded word that decodes to an address', ['From: =?utf-8?q?evil=40bad=2Eexample?= <app@good.example>'], /display name .* looks like an address/],
  ['a folded From whose second line carries the address', ['From: "App"', ' <evil@bad.example>'], /Header From <evil@bad\.example> is not in an allowed sender domain/],
  ['no From at all', ['To: <user@example.org>'], /no From header/],
  ['a From longer than the strict parser can read in bounded time', [`From: ${'a '.repeat(300)}<app@good.example>`], /longer than 256 characters/],
];

describe('header From, read strictly', () => {
  for (const [what, headers, why] of REFUSED) {
    it(`refuses ${what}: 550 5.7.1 naming why, the upstream receives nothing`, async () => {
      const { reply, upstream, gw } = await send(headers);
      expect(reply?.code).toBe(550);
      expect(reply?.text).toMatch(/^550 5\.7\.1 /);
      expect(reply?.text).toMatch(why);
      expect(upstream.messages).toHaveLength(0);
      // with the message streamed, an upstream transaction may have opened: it never got a byte
      expect(upstream.attempts.every((attempt) => !attempt.completed && attempt.bytes === 0)).toBe(true);
      expect(await gw.metricsText()).toMatch(/smtp_gateway_messages_total\{outcome="rejected",reason="header_from"\} 1/);
    });
  }

  const RELAYED: Array<[string, string[]]> = [
    ['a display name and an address', ['From: App <app@good.example>']],
    ['whitespace before the colon (RFC 5322 obs-syntax), once', ['From : <app@good.example>']],
    ['an encoded-word display name', ['From: =?UTF-8?Q?J=C3=BCrgen?= <app@good.example>']],
    ['a quoted display name with a comma', ['From: "Ops, Team" <app@good.example>']],
  ];
  for (const [what, headers] of RELAYED) {
    it(`relays ${what}, byte for byte`, async () => {
      const { reply, upstream } = await send(headers);
      expect(reply?.text).toMatch(/^250 /);
      expect(upstream.messages).toHaveLength(1);
      expect(upstream.messages[0].raw.toString('utf8')).toContain(`${headers.join('\r\n')}\r\nSubject: t\r\n`);
    });
  }
});
