/**
 * A set of IP networks (the `allowedNetworks` that may relay without AUTH, the
 * `trustedNetworks` that may send a PROXY header). Backed by Node's own
 * net.BlockList so matching is exact and fast; this wrapper adds what the
 * gateway needs on top: bare addresses as /32 or /128, IPv4-mapped IPv6 peers
 * (`::ffff:10.1.2.3`, which a dual-stack listener reports) matched as the IPv4
 * address they are, and errors that name the offending entry.
 */
import { BlockList, isIP } from 'node:net';
import { parseCidr } from '../config/cidr';

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** Error for a list entry that is not an IP address or CIDR block. */
export class InvalidNetworkError extends Error {
  readonly code = 'INVALID_NETWORK';
  constructor(
    readonly entry: string,
    readonly index: number,
  ) {
    super(`Invalid network ${JSON.stringify(entry)} at index ${index}: expected an IP address or CIDR block such as 10.0.0.0/8 or fd00::/8`);
    this.name = 'InvalidNetworkError';
  }
}

/** Plain IPv4 for an IPv4-mapped IPv6 address, the address itself otherwise (zone index dropped). */
export function unmapAddress(ip: string): string {
  let address = ip.trim();
  const zone = address.indexOf('%');
  if (zone >= 0) address = address.slice(0, zone);
  const mapped = MAPPED_IPV4.exec(address);
  return mapped && isIP(mapped[1]) === 4 ? mapped[1] : address;
}

/** Client addresses whose answer a list remembers (the lists are fixed once built); past it the memory starts afresh. */
const MAX_REMEMBERED_ADDRESSES = 4096;

export class NetworkList {
  /** True when the list holds no network, so it matches nothing. */
  readonly empty: boolean;
  /** The entries as given, for logs and error messages. */
  readonly cidrs: readonly string[];
  private readonly blocks = new BlockList();
  private readonly answers = new Map<string, boolean>();

  /** @throws InvalidNetworkError naming the first entry that is not an address or CIDR block. */
  constructor(cidrs: readonly string[]) {
    cidrs.forEach((entry, index) => this.add(entry, index));
    this.cidrs = [...cidrs];
    this.empty = cidrs.length === 0;
  }

  /** Whether `ip` lies in one of the networks; false for anything that is not an IP address. */
  contains(ip: string): boolean {
    if (this.empty || typeof ip !== 'string') return false;
    // asked at every RCPT; BlockList#check builds a SocketAddress per call, so the answer is remembered per client address
    const known = this.answers.get(ip);
    if (known !== undefined) return known;
    const address = unmapAddress(ip);
    const family = isIP(address);
    const inside = family !== 0 && this.blocks.check(address, family === 4 ? 'ipv4' : 'ipv6');
    if (this.answers.size >= MAX_REMEMBERED_ADDRESSES) this.answers.clear();
    this.answers.set(ip, inside);
    return inside;
  }

  toString(): string {
    return this.cidrs.join(', ');
  }

  private add(entry: string, index: number): void {
    const parsed = typeof entry === 'string' ? parseCidr(entry.trim()) : undefined;
    if (!parsed) throw new InvalidNetworkError(String(entry), index);
    let { address, family, prefix } = parsed;
    // ::ffff:10.0.0.0/104 is written by people who mean 10.0.0.0/8
    const unmapped = unmapAddress(address);
    if (family === 6 && unmapped !== address && prefix >= 96) {
      address = unmapped;
      family = 4;
      prefix -= 96;
    }
    this.blocks.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
}
