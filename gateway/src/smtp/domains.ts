/**
 * Domain patterns from the policy ("example.com" matches that domain only,
 * "*.example.com" matches its subdomains), and the domain of an address.
 */
export class DomainList {
  readonly empty: boolean;
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];

  constructor(patterns: readonly string[]) {
    for (const pattern of patterns) {
      const lower = pattern.toLowerCase();
      if (lower.startsWith('*.')) this.suffixes.push(lower.slice(1));
      else this.exact.add(lower);
    }
    this.empty = patterns.length === 0;
  }

  matches(domain: string): boolean {
    const lower = domain.toLowerCase().replace(/\.$/, '');
    if (this.exact.has(lower)) return true;
    return this.suffixes.some((suffix) => lower.endsWith(suffix) && lower.length > suffix.length);
  }
}

/** The domain part of an address ("" when there is none, e.g. the null sender). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).replace(/^\[|\]$/g, '');
}
