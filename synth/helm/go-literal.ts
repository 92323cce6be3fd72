/**
 * Plain data as a Go template expression built from sprig's `dict` and `list`,
 * so constants from TypeScript (ports, paths) reach template logic unretyped.
 */
export function goLiteral(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`Cannot write the number ${value} as a Go template literal`);
    return String(value);
  }
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `(list${value.map((v) => ` ${goLiteral(v)}`).join('')})`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(([k, v]) => ` ${JSON.stringify(k)} ${goLiteral(v)}`);
    return `(dict${entries.join('')})`;
  }
  throw new Error(`Cannot write ${String(value)} as a Go template literal`);
}
