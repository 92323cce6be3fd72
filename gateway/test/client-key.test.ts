/**
 * Per-client limits count an IPv6 client by its prefix (policy.clientPrefixLength,
 * /64 by default): the key function over many addresses, and over a real
 * socket on ::1 (loopback IPv6 has only that one address) that the connection
 * limit is applied under that key.
 */
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { clientKey } from '../src/smtp/client-key';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { startTestGateway } from '../../testkit/test-gateway';

const track = closeAfterEach();
const DEFAULT = { ipv4: 32, ipv6: 64 };

describe('clientKey', () => {
  it('an IPv6 address counts as its /64: every address a host picks in its subnet is the same client', () => {
    const keys = ['2001:db8:1:2::1', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:DB8:1:2:a:b:c:d', '2001:0db8:0001:0002::7'].map((ip) => clientKey(ip, DEFAULT));
    expect(new Set(keys)).toEqual(new Set(['2001:db8:1:2::/64']));
    expect(clientKey('2001:db8:1:3::1', DEFAULT)).toBe('2001:db8:1:3::/64');
    expect(clientKey('::1', DEFAULT)).toBe('::/64');
    expect(clientKey('fe80::1%eth0', DEFAULT)).toBe('fe80::/64');
    expect(clientKey('2001:db8::1.2.3.4', DEFAULT)).toBe('2001:db8::/64');
  });

  it('prefix lengths are configurable, for both families, down to the bit', () => {
    expect(clientKey('2001:db8:1:2::1', { ipv4: 32, ipv6: 48 })).toBe('2001:db8:1::/48');
    expect(clientKey('2001:db8:1:ff::1', { ipv4: 32, ipv6: 60 })).toBe('2001:db8:1:f0::/60');
    expect(clientKey('2001:db8::1', { ipv4: 32, ipv6: 128 })).toBe('2001:db8::1');
    expect(clientKey('10.1.2.3', { ipv4: 24, ipv6: 64 })).toBe('10.1.2.0/24');
    expect(clientKey('10.1.2.3', { ipv4: 20, ipv6: 64 })).toBe('10.1.0.0/20');
    expect(clientKey('10.1.2.3', DEFAULT)).toBe('10.1.2.3');
  });

  it('an IPv4-mapped IPv6 peer (a dual-stack listener) is the IPv4 client it is', () => {
    expect(clientKey('::ffff:10.1.2.3', DEFAULT)).toBe('10.1.2.3');
    expect(clientKey('::ffff:10.1.2.3', { ipv4: 16, ipv6: 64 })).toBe('10.1.0.0/16');
  });
});

describe('per-client limits over IPv6 (real sockets on ::1)', () => {
  async function openFromLoopback6(port: number) {
    const socket = connect({ host: '::1', port });
    track({ destroy: () => socket.destroy() });
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    await eventually(() => /\r\n/.test(text), 'a first reply line');
    return text;
  }

  for (const [ipv6, key] of [
    [64, '::/64'],
    [128, '::1'],
  ] as const) {
    it(`maxConnectionsPerIp counts ::1 under ${key} with clientPrefixLength.ipv6 ${ipv6}`, async () => {
      const gw = track(
        await startTestGateway({ listenAddress: '::1', policy: { maxConnectionsPerIp: 1, clientPrefixLength: { ipv6 }, allowedNetworks: ['::1/128'] } }),
      );
      expect(await openFromLoopback6(gw.relayPort)).toMatch(/^220 /);
      expect(await openFromLoopback6(gw.relayPort)).toMatch(/^421 4\.7\.0 Too many connections from your address/);
      const refused = gw.logs.find((line) => line.msg === 'connection refused');
      expect(refused).toMatchObject({ client: '::1', clientKey: key, reason: 'max_per_ip' });
    });
  }
});
