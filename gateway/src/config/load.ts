/**
 * Loads the gateway configuration once at start-up: an optional YAML file (named
 * by `--config FILE` or SMTPGW_CONFIG), then per-key environment overrides
 * (SMTPGW_UPSTREAM__HOST=… sets upstream.host), validated by `configSchema`.
 * Everything after this returns plain, typed data.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ENV } from './constants';
import { configSchema, type GatewayConfig } from './schema';
import { envName, leaves, objectShape, unwrap } from './schema-walk';

/** A configuration that cannot be used; `problems` each name a key, a value and what was expected. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  /** Path of the YAML file; overrides SMTPGW_CONFIG. */
  readonly file?: string;
  /** Environment to read SMTPGW_* from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

export interface LoadedConfig {
  readonly config: GatewayConfig;
  /** The file that was read, if any. */
  readonly file?: string;
}

type Input = Record<string, unknown>;

export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? env[ENV.configFile];
  // set but empty is a mistake, never a request for the built-in defaults
  if (file === '') throw new ConfigError([`${options.file === undefined ? ENV.configFile : '--config'}: expected a file name, got ""`]);
  const input: Input = file ? readConfigFile(file) : {};
  const fromEnv = new Map<string, string>();
  const envProblems = applyEnvOverrides(input, env, fromEnv);
  const checked = check(input, fromEnv);
  // every problem at once, so one restart can fix them all
  if (envProblems.length || !checked.config) throw new ConfigError([...envProblems, ...checked.problems]);
  return { config: checked.config, file };
}

/**
 * Validates already-assembled input (tests, --print-config) with the same messages as start-up.
 * @param fromEnv dotted key → the SMTPGW_* variable that set it, named in its problems
 */
export function validateConfig(input: unknown, fromEnv: ReadonlyMap<string, string> = new Map()): GatewayConfig {
  const checked = check(input, fromEnv);
  if (!checked.config) throw new ConfigError(checked.problems);
  return checked.config;
}

function check(input: unknown, fromEnv: ReadonlyMap<string, string>): { config?: GatewayConfig; problems: string[] } {
  const result = configSchema.safeParse(input);
  if (result.success) return { config: result.data, problems: [] };
  return { problems: result.error.issues.map((issue) => describeIssue(issue, input, fromEnv)) };
}

function readConfigFile(file: string): Input {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`config file ${JSON.stringify(file)} cannot be read: ${(err as Error).message}`]);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new ConfigError([`config file ${JSON.stringify(file)} is not valid YAML: ${(err as Error).message}`]);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError([`config file ${JSON.stringify(file)}: expected a mapping of keys at the top level, got ${JSON.stringify(parsed)}`]);
  }
  return parsed as Input;
}

/**
 * SMTPGW_POLICY__ALLOWED_NETWORKS=10.0.0.0/8,fd00::/8 → policy.allowedNetworks.
 * Each segment matches a schema key ignoring case and underscores; the leaf's
 * schema type decides how the string is read (number, boolean, comma list).
 */
function applyEnvOverrides(input: Input, env: NodeJS.ProcessEnv, fromEnv: Map<string, string>): string[] {
  const problems: string[] = [];
  const topLevel = new Set(Object.keys(configSchema.shape).map(normalise));
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV.overridePrefix) || name === ENV.configFile || raw === undefined) continue;
    const segments = name.slice(ENV.overridePrefix.length).split('__');
    // Kubernetes service links (SMTPGW_SMTP_GATEWAY_SERVICE_HOST=10.0.0.1 for a release named
    // smtpgw) share the prefix but never "__" and carry an address, port or protocol: only
    // those are passed over; any other SMTPGW_* is ours, so a misspelt one is refused.
    if (segments.length === 1 && !topLevel.has(normalise(segments[0])) && isServiceLink(name, raw)) continue;
    let schema: z.ZodType = configSchema;
    let target = input;
    const path: string[] = [];
    for (const [index, segment] of segments.entries()) {
      const shape = objectShape(schema);
      const key = shape && Object.keys(shape).find((candidate) => normalise(candidate) === normalise(segment));
      if (!shape || !key) {
        const known = shape ? Object.keys(shape).map((k) => envName([k])).join(', ') : 'none (this key takes a value)';
        const guess = didYouMean(name);
        problems.push(
          `${name}: ${[...path, segment.toLowerCase()].join('.')} is not a configuration key (keys here: ${known})${guess ? `; did you mean ${guess}?` : ''}`,
        );
        break;
      }
      path.push(key);
      schema = shape[key];
      if (index === segments.length - 1) {
        const value = fromEnvString(schema, raw);
        if (value.ok) {
          target[key] = value.value;
          fromEnv.set(path.join('.'), name);
        } else problems.push(`${name}=${JSON.stringify(raw)} (${path.join('.')}): expected ${value.expected}`);
      } else {
        const next = target[key];
        target = target[key] = next && typeof next === 'object' && !Array.isArray(next) ? (next as Input) : {};
      }
    }
  }
  return problems;
}

const SERVICE_LINK_VALUES: ReadonlyArray<[RegExp, RegExp]> = [
  [/_SERVICE_HOST$|_PORT_\d+_(TCP|UDP|SCTP)_ADDR$/, /^[\d.]+$|^[\da-f:]+$/i],
  [/_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)_PORT$/, /^\d+$/],
  [/_PORT_\d+_(TCP|UDP|SCTP)_PROTO$/, /^(tcp|udp|sctp)$/],
  [/_PORT(_\d+_(TCP|UDP|SCTP))?$/, /^(tcp|udp|sctp):\/\//],
];

/** A variable Kubernetes sets for a Service whose name starts like our prefix (name and value both fit). */
function isServiceLink(name: string, value: string): boolean {
  return SERVICE_LINK_VALUES.some(([suffix, shape]) => suffix.test(name) && shape.test(value));
}

/** The known variable closest to a misspelt one, when it is close enough to be the one meant. */
function didYouMean(name: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const leaf of leaves(configSchema)) {
    const candidate = ENV.overridePrefix + envName(leaf.path);
    const distance = levenshtein(name, candidate);
    if (!best || distance < best.distance) best = { name: candidate, distance };
  }
  const allowed = Math.max(2, Math.floor(name.length / 4));
  return best && best.distance <= allowed ? best.name : undefined;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

const normalise = (key: string) => key.replace(/_/g, '').toLowerCase();

type Converted = { ok: true; value: unknown } | { ok: false; expected: string };

function fromEnvString(schema: z.ZodType, raw: string): Converted {
  const inner = unwrap(schema);
  const def = inner._zod.def as { type: string; element?: z.ZodType };
  switch (def.type) {
    case 'number': {
      // decimal only: Number() would also read 0x10, 0b101, 0o7 and 1e1
      const text = raw.trim();
      return /^[+-]?\d+(\.\d+)?$/.test(text) ? { ok: true, value: Number(text) } : { ok: false, expected: 'a decimal number' };
    }
    case 'boolean': {
      const value = raw.trim().toLowerCase();
      if (['true', '1', 'yes'].includes(value)) return { ok: true, value: true };
      if (['false', '0', 'no'].includes(value)) return { ok: true, value: false };
      return { ok: false, expected: 'true or false' };
    }
    case 'array': {
      const items = raw.split(',').map((item) => item.trim()).filter((item) => item !== '');
      const converted: unknown[] = [];
      for (const item of items) {
        const value = fromEnvString(def.element as z.ZodType, item);
        if (!value.ok) return { ok: false, expected: `a comma-separated list of ${value.expected}` };
        converted.push(value.value);
      }
      return { ok: true, value: converted };
    }
    case 'object':
      return { ok: false, expected: 'one of its sub-keys (use __ between levels), not a value for the whole object' };
    default:
      // strings and enums: the schema itself says what is allowed
      return { ok: true, value: raw };
  }
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown, fromEnv: ReadonlyMap<string, string>): string {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const where = path.length ? path.join('.') : 'the top level';
    return `${issue.keys.map((key) => [...path, key].join('.')).join(', ')}: not a configuration key at ${where}`;
  }
  const value = valueAt(input, issue.path);
  const shown = value === undefined ? 'missing' : JSON.stringify(value);
  // a list item's problem is named by the variable that set the whole list
  const variable = fromEnv.get(path.join('.')) ?? fromEnv.get(path.slice(0, -1).join('.'));
  return `${path.join('.') || '(root)'}: got ${shown}; ${issue.message.replace(/^Invalid [a-z ]+: /, '')}${variable ? ` (from ${variable})` : ''}`;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = input;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
