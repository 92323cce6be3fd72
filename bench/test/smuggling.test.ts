/**
 * SMTP smuggling: every end-of-data variant a lenient server might honour,
 * with and without pipelining, sent through the gateway to an upstream that
 * does honour them. Whether the gateway refuses bare CR/LF (the default) or
 * normalises them, the upstream must never see a second message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchGatewayConfig, startGatewayProcess, type GatewayProcess } from '../lib/gateway-process';
import { startLenientUpstream, type LenientUpstream } from '../../testkit/lenient-upstream';
import { rawTransaction } from '../../testkit/raw-transaction';

const VARIANTS: Record<string, string> = {
  '<LF>.<LF>': '\n.\n',
  '<LF>.<CR><LF>': '\n.\r\n',
  '<CR><LF>.<LF>': '\r\n.\n',
  '<CR>.<CR>': '\r.\r',
  '<CR><LF>.<CR>': '\r\n.\r',
};

const SMUGGLED_FROM = 'ceo@victim.test';

/** A message whose fake end of data is followed by a complete second transaction. */
function smugglingPayload(variant: string, name: string): string {
  return (
    'From: <sender@bench.test>\r\nTo: <rcpt@sink.test>\r\n' +
    `Subject: carrier ${name}\r\n\r\nfirst message` +
    variant +
    `MAIL FROM:<${SMUGGLED_FROM}>\r\nRCPT TO:<rcpt@sink.test>\r\nDATA\r\n` +
    `From: <${SMUGGLED_FROM}>\r\nSubject: SMUGGLED\r\n\r\nwire the money\r\n` +
    '\r\n.\r\n'
  );
}

describe('SMTP smuggling through the gateway', () => {
  let upstream: LenientUpstream;
  const gateways: Record<string, GatewayProcess> = {};

  beforeAll(async () => {
    upstream = await startLenientUpstream();
    for (const mode of ['reject', 'normalize'] as const) {
      gateways[mode] = await startGatewayProcess({
        config: benchGatewayConfig(upstream, { policy: { lineEndings: mode } }),
        runtime: 'tsx',
      });
    }
  });
  afterAll(async () => {
    for (const gateway of Object.values(gateways)) await gateway.stop(10_000);
    await upstream?.close();
  });

  it('the test upstream really is lenient: sent to it directly, each payload becomes two messages', async () => {
    for (const [name, variant] of Object.entries(VARIANTS)) {
      const before = upstream.messages.length;
      await rawTransaction(upstream, { data: smugglingPayload(variant, name) });
      expect(upstream.messages.length - before, name).toBe(2);
      expect(upstream.messages.at(-1)?.mailFrom, name).toBe(SMUGGLED_FROM);
    }
  });

  for (const mode of ['reject', 'normalize'] as const) {
    for (const pipelining of [false, true]) {
      for (const [name, variant] of Object.entries(VARIANTS)) {
        it(`${mode}, ${pipelining ? 'pipelined' : 'step by step'}, ${name}: the upstream sees no second message`, async () => {
          const gateway = gateways[mode];
          const before = upstream.messages.length;
          const result = await rawTransaction(
            { host: '127.0.0.1', port: gateway.ports.relay },
            { pipelining, data: smugglingPayload(variant, name) },
          );
          // Anything the gateway forwarded has arrived by the time it answered; a little slack for stragglers.
          await new Promise((resolve) => setTimeout(resolve, 200));
          const received = upstream.messages.slice(before);
          expect(received.filter((message) => message.mailFrom === SMUGGLED_FROM)).toEqual([]);
          expect(received.length).toBeLessThanOrEqual(1);
          if (mode === 'reject') {
            // Bare CR or LF in the data is refused with 550 5.6.x and nothing is relayed.
            expect(result.final?.code, JSON.stringify(result.replies)).toBe(550);
            expect(received).toEqual([]);
          } else {
            expect(result.final?.code, JSON.stringify(result.replies)).toBe(250);
            expect(received).toHaveLength(1);
            // The would-be second message travels as text inside the first.
            expect(received[0].data).toContain('SMUGGLED');
          }
          expect(gateway.exited()).toBeUndefined();
        });
      }
    }
  }

  it('a clean message still relays (so the cases above could have failed)', async () => {
    const before = upstream.messages.length;
    const result = await rawTransaction(
      { host: '127.0.0.1', port: gateways.reject.ports.relay },
      { data: 'From: <sender@bench.test>\r\nSubject: clean\r\n\r\nhello\r\n.\r\n' },
    );
    expect(result.final?.code).toBe(250);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(upstream.messages.length - before).toBe(1);
  });
});
