import { describe, expect, it } from 'vitest';
import { InvalidNetworkError, NetworkList, unmapAddress } from '../src/smtp/networks';

describe('NetworkList', () => {
  it('matches IPv4 and IPv6 CIDR blocks', () => {
    const list = new NetworkList(['10.0.0.0/8', '192.168.1.0/24', 'fd00::/8']);
    expect(list.contains('10.1.2.3')).toBe(true);
    expect(list.contains('11.0.0.1')).toBe(false);
    expect(list.contains('192.168.1.255')).toBe(true);
    expect(list.contains('192.168.2.1')).toBe(false);
    expect(list.contains('fd12:3456::1')).toBe(true);
    expect(list.contains('fe80::1')).toBe(false);
    expect(list.empty).toBe(false);
  });

  it('treats bare addresses as /32 and /128', () => {
    const list = new NetworkList(['10.1.2.3', '2001:db8::5']);
    expect(list.contains('10.1.2.3')).toBe(true);
    expect(list.contains('10.1.2.4')).toBe(false);
    expect(list.contains('2001:db8::5')).toBe(true);
    expect(list.contains('2001:0db8:0000::0005')).toBe(true);
    expect(list.contains('2001:db8::6')).toBe(false);
  });

  it('matches IPv4-mapped IPv6 peers as the IPv4 address they carry', () => {
    const list = new NetworkList(['10.0.0.0/8']);
    expect(list.contains('::ffff:10.1.2.3')).toBe(true);
    expect(list.contains('::FFFF:10.1.2.3')).toBe(true);
    expect(list.contains('::ffff:11.1.2.3')).toBe(false);
    // an entry written in mapped form means the IPv4 network
    const mapped = new NetworkList(['::ffff:172.16.0.0/108']);
    expect(mapped.contains('172.16.5.5')).toBe(true);
    expect(mapped.contains('172.32.0.1')).toBe(false);
    expect(unmapAddress('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(unmapAddress('fe80::1%eth0')).toBe('fe80::1');
  });

  it('does not confuse IPv4 with IPv6 loopback', () => {
    const list = new NetworkList(['127.0.0.0/8']);
    expect(list.contains('127.0.0.1')).toBe(true);
    expect(list.contains('::1')).toBe(false);
    const v6 = new NetworkList(['::1/128']);
    expect(v6.contains('::1')).toBe(true);
    expect(v6.contains('127.0.0.1')).toBe(false);
  });

  it('an empty list matches nothing', () => {
    const list = new NetworkList([]);
    expect(list.empty).toBe(true);
    expect(list.contains('127.0.0.1')).toBe(false);
  });

  it('gives the same answers when asked again, and past the addresses it remembers', () => {
    const list = new NetworkList(['10.0.0.0/8', '::ffff:192.0.2.0/120']);
    for (let round = 0; round < 2; round++) {
      expect(list.contains('10.1.2.3')).toBe(true);
      expect(list.contains('::ffff:10.1.2.3')).toBe(true);
      expect(list.contains('192.0.2.9')).toBe(true);
      expect(list.contains('11.1.2.3')).toBe(false);
      expect(list.contains('localhost')).toBe(false);
    }
    // more distinct clients than the list remembers: each still gets its own answer
    for (let i = 0; i < 5000; i++) expect(list.contains(`${i % 2 ? 10 : 11}.0.${(i >> 8) & 255}.${i & 255}`)).toBe(i % 2 === 1);
    expect(list.contains('10.1.2.3')).toBe(true);
  });

  it('returns false for things that are not addresses', () => {
    const list = new NetworkList(['0.0.0.0/0', '::/0']);
    expect(list.contains('1.2.3.4')).toBe(true);
    expect(list.contains('2001:db8::1')).toBe(true);
    expect(list.contains('')).toBe(false);
    expect(list.contains('localhost')).toBe(false);
    expect(list.contains('1.2.3.4/8')).toBe(false);
  });

  it.each(['10.0.0.0/33', '::/129', 'example.com', '10.0.0.0/8/8', '10.0.0.0/', '10.0.0.0/x', ''])(
    'refuses %j with an error naming the entry',
    (entry) => {
      let error: unknown;
      try {
        new NetworkList(['127.0.0.1', entry]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidNetworkError);
      expect((error as Error).message).toContain(JSON.stringify(entry));
      expect((error as Error).message).toContain('index 1');
    },
  );
});
