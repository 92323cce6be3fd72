/**
 * Who counts as one client for the per-client limits (connections per client,
 * failed AUTH, messages per minute). An IPv6 host is usually given a whole /64
 * and may use a new address of it for every connection, so keyed by full
 * address it would get a fresh allowance each time; it is keyed by its prefix
 * (policy.clientPrefixLength) instead.
 */
import { isIP } from 'node:net';
import type { GatewayConfig } from '../config/schema';
import { unmapAddress } from './networks';

export type ClientPrefixLength = GatewayConfig['policy']['clientPrefixLength'];

/**
 * "192.0.2.7" at /32 stays itself; "2001:db8:1:2:3:4:5:6" at /64 is "2001:db8:1:2::/64";
 * an IPv4-mapped IPv6 address counts as the IPv4 address. Anything that is not an IP
 * address is its own key.
 */
export function clientKey(ip: string, prefixLength: ClientPrefixLength): string {
  const address = unmapAddress(ip);
  const family = isIP(address);
  if (family === 4) {
    if (prefixLength.ipv4 >= 32) return address;
    const bits = address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
    const masked = bits - (bits % 2 ** (32 - prefixLength.ipv4));
    const octets = [24, 16, 8, 0].map((shift) => Math.floor(masked / 2 ** shift) % 256);
    return `${octets.join('.')}/${prefixLength.ipv4}`;
  }
  if (family === 6) {
    const groups = ipv6Groups(address);
    if (prefixLength.ipv6 >= 128) return canonicalIpv6(groups);
    const masked = groups.map((group, index) => {
      const keep = Math.min(16, Math.max(0, prefixLength.ipv6 - index * 16));
      return keep === 0 ? 0 : group - (group % 2 ** (16 - keep));
    });
    return `${canonicalIpv6(masked)}/${prefixLength.ipv6}`;
  }
  return ip;
}

/** The eight 16-bit groups of a valid IPv6 address (with "::" and a dotted IPv4 tail expanded). */
function ipv6Groups(address: string): number[] {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const parse = (part: string | undefined) =>
    (part ? part.split(':') : []).flatMap((piece) => {
      if (!piece.includes('.')) return [parseInt(piece, 16)];
      const [a, b, c, d] = piece.split('.').map(Number);
      return [a * 256 + b, c * 256 + d];
    });
  const front = parse(head);
  const back = parse(tail);
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/** RFC 5952 text form, as the WHATWG URL parser writes it. */
function canonicalIpv6(groups: readonly number[]): string {
  return new URL(`http://[${groups.map((group) => group.toString(16)).join(':')}]/`).hostname.slice(1, -1);
}
