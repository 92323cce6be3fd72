/**
 * Human views of the configuration: the settings list of --help (from the
 * schema, so it cannot drift) and --print-config's copy with secrets masked.
 */

import { ENV } from './constants';
import { configSchema, type GatewayConfig } from './schema';
import { envName, leaves, unwrap } from './schema-walk';

export function describeSettings(): string[] {
  return leaves(configSchema).map(({ path, schema }) => {
    const def = schema._zod.def as { type: string; defaultValue?: unknown };
    const fallback = def.type === 'default' ? ` (default ${JSON.stringify(def.defaultValue)})` : '';
    const description = schema.description ?? unwrap(schema).description ?? '';
    return `${ENV.overridePrefix}${envName(path)}${fallback}\n      ${path.join('.')}: ${description}`;
  });
}

/**
 * Secrets are only ever referenced by file path in the configuration, so the
 * paths are shown and file contents never read; any other value under a
 * secret-sounding key is masked in case a future field carries one inline.
 */
export function maskSecrets(config: GatewayConfig): unknown {
  return mask(config, '');
}

const SECRET_KEY = /(password|secret|token|credential|key)$/i;

function mask(value: unknown, key: string): unknown {
  if (Array.isArray(value)) return value.map((item) => mask(item, key));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mask(v, k)]));
  }
  if (typeof value === 'string' && value !== '' && SECRET_KEY.test(key)) return '***';
  return value;
}

