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
import { envName, objectShape, unwrap } from './schema-walk';

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
  const file = options.file ?? (env[ENV.configFile] || undefined);
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
    // Kubernetes service links (SMTPGW_SMTP_GATEWAY_SERVICE_HOST for a release named
    // smtpgw) share the prefix but never the "__" separator: only a variable with
    // "__" or naming a top-level key is ours, so a typo below the top level is still caught.
    if (segments.length === 1 && !topLevel.has(normalise(segments[0]))) continue;
    let schema: z.ZodType = configSchema;
    let target = input;
    const path: string[] = [];
    for (const [index, segment] of segments.entries()) {
      const shape = objectShape(schema);
      const key = shape && Object.keys(shape).find((candidate) => normalise(candidate) === normalise(segment));
      if (!shape || !key) {
        const known = shape ? Object.keys(shape).map((k) => envName([k])).join(', ') : 'none (this key takes a value)';
        problems.push(`${name}: ${[...path, segment.toLowerCase()].join('.')} is not a configuration key (keys here: ${known})`);
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

const normalise = (key: string) => key.replace(/_/g, '').toLowerCase();

type Converted = { ok: true; value: unknown } | { ok: false; expected: string };

function fromEnvString(schema: z.ZodType, raw: string): Converted {
  const inner = unwrap(schema);
  const def = inner._zod.def as { type: string; element?: z.ZodType };
  switch (def.type) {
    case 'number': {
      const value = Number(raw.trim());
      return raw.trim() !== '' && Number.isFinite(value) ? { ok: true, value } : { ok: false, expected: 'a number' };
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
