/**
 * Domains in one canonical form, and the domain patterns of the policy
 * ("example.com" matches that domain only, "*.example.com" its subdomains).
 *
 * Canonical means IDNA to ASCII (UTS #46, what node:url does), lower case, no
 * trailing dot: "Bücher.Example." and "xn--bcher-kva.example" are one domain.
 * Config, MAIL FROM, RCPT TO and the header From are all compared in this form,
 * because smtp-server hands addresses over with their domain decoded to Unicode
 * while a config or a header may spell the same domain as an A-label.
 */
import { domainToASCII } from 'node:url';

/** A host name of LDH labels, as every canonical domain must be. */
const LDH_DOMAIN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * The canonical form of a domain, or undefined when it is not a valid host name
 * in either spelling. An address literal ("[192.0.2.1]") is kept as it is, lower-cased.
 */
export function canonicalDomain(domain: string): string | undefined {
  const known = canonicalByDomain.get(domain);
  if (known !== undefined || canonicalByDomain.has(domain)) return known;
  let canonical: string | undefined;
  if (domain.startsWith('[') && domain.endsWith(']')) {
    canonical = domain.toLowerCase();
  } else {
    const ascii = domainToASCII(domain.replace(/\.$/, '')).toLowerCase();
    canonical = ascii.length <= 253 && LDH_DOMAIN.test(ascii) ? ascii : undefined;
  }
  if (canonicalByDomain.size >= MAX_REMEMBERED_DOMAINS) canonicalByDomain.clear();
  canonicalByDomain.set(domain, canonical);
  return canonical;
}

/**
 * A message's domains are canonicalised at MAIL, at RCPT and again at DATA, each an IDNA conversion in
 * native code, and mail goes to few domains: the answers are remembered (bounded, started afresh when full).
 */
const canonicalByDomain = new Map<string, string | undefined>();
const MAX_REMEMBERED_DOMAINS = 4096;

/** A policy pattern in canonical form ("*." kept), or undefined when it is not a domain. */
export function canonicalPattern(pattern: string): string | undefined {
  const wildcard = pattern.startsWith('*.');
  const domain = canonicalDomain(wildcard ? pattern.slice(2) : pattern);
  return domain === undefined || domain.startsWith('[') ? undefined : `${wildcard ? '*.' : ''}${domain}`;
}

export class DomainList {
  readonly empty: boolean;
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];

  /** Patterns come validated from the config schema; one that is not a domain is a programming error. */
  constructor(patterns: readonly string[]) {
    for (const pattern of patterns) {
      const canonical = canonicalPattern(pattern);
      if (canonical === undefined) throw new Error(`not a domain pattern: ${JSON.stringify(pattern)}`);
      if (canonical.startsWith('*.')) this.suffixes.push(canonical.slice(1));
      else this.exact.add(canonical);
    }
    this.empty = patterns.length === 0;
  }

  /** Whether the domain (in either spelling) matches; a domain that is not valid never does. */
  matches(domain: string): boolean {
    const canonical = canonicalDomain(domain);
    if (canonical === undefined) return false;
    if (this.exact.has(canonical)) return true;
    return this.suffixes.some((suffix) => canonical.endsWith(suffix) && canonical.length > suffix.length);
  }
}

/** The domain part of an address ("" when there is none, e.g. the null sender). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).replace(/^\[|\]$/g, '');
}

/** The local part of an address (all of it when there is no "@"). */
export function localPartOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
}

/**
 * The address as it goes upstream: the local part exactly as the client sent it,
 * the domain canonical. An address the client sent in ASCII therefore leaves in
 * ASCII, although smtp-server decoded its domain to Unicode on the way in.
 */
export function canonicalAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = address.slice(at + 1);
  return `${address.slice(0, at)}@${canonicalDomain(domain) ?? domain}`;
}

/** Whether a string has anything outside US-ASCII (an address or header that needs SMTPUTF8). */
export function hasNonAscii(text: string): boolean {
  return /[^\x00-\x7f]/.test(text);
}
