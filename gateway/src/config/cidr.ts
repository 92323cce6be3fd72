/**
 * "10.0.0.0/8", "fd00::/8" or a bare address (a /32 or /128), read one way for
 * the configuration schema (which refuses what this cannot read) and the
 * network lists built from it (smtp/networks.ts).
 */
import { isIP } from 'node:net';

export interface Cidr {
  readonly address: string;
  readonly family: 4 | 6;
  readonly prefix: number;
}

/** The block `value` names, or undefined when it is not an address or CIDR block. */
export function parseCidr(value: string): Cidr | undefined {
  const [address, bits, ...rest] = value.split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return undefined;
  const family = version === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (bits === undefined) return { address, family, prefix: max };
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return undefined;
  return { address, family, prefix: Number(bits) };
}
