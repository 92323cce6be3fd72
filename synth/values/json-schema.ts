/**
 * The values model as JSON Schema (values.schema.json) and a walk over it that
 * the values.yaml and README writers share, so both describe exactly the keys
 * the schema accepts.
 */
import { z } from 'zod';
import { valuesSchema, type ChartValues } from './schema';

export interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  [key: string]: unknown;
}

/** values.schema.json: the input side of the model, so every key is optional and defaults are documented. */
export function valuesJsonSchema(): JsonSchema {
  const schema = z.toJSONSchema(valuesSchema, { io: 'input' }) as JsonSchema;
  const config = schema.properties?.config;
  if (!config) throw new Error('values model has no config key: requireUpstream() has nothing to apply to');
  schema.properties = { ...schema.properties, config: { ...config, ...requireUpstream() } };
  return { ...schema, title: 'smtp-gateway chart values' };
}

/**
 * The gateway refuses to start without a smarthost unless devUpstream.enabled
 * (gateway/src/config/schema.ts); JSON Schema from zod leaves that cross-key check
 * out, so the chart states it itself and refuses to render a release that could not start.
 */
function requireUpstream(): JsonSchema {
  return {
    if: { properties: { devUpstream: { properties: { enabled: { const: true } }, required: ['enabled'] } }, required: ['devUpstream'] },
    else: { properties: { upstream: { properties: { host: { minLength: 1 } }, required: ['host'] } }, required: ['upstream'] },
  };
}

/** Every default filled in: the content of values.yaml. */
export function defaultValues(): ChartValues {
  return valuesSchema.parse({});
}

export interface ValueKey {
  /** Dotted path, e.g. `autoscaling.minReplicas`. */
  readonly path: string;
  readonly key: string;
  readonly depth: number;
  readonly schema: JsonSchema;
  readonly defaultValue: unknown;
  /** True when the key is an object with named keys of its own (written as a section). */
  readonly section: boolean;
}

/** Depth-first walk over named keys, in model order; keys the chart owns (readOnly: refused when set) are left out. */
export function walkKeys(schema: JsonSchema, defaults: unknown, prefix = '', depth = 0): ValueKey[] {
  const out: ValueKey[] = [];
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    if (child.readOnly === true) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    const value = (defaults as Record<string, unknown> | undefined)?.[key];
    // An object whose keys are all the chart's is written as {} (a leaf), not as an empty section.
    const section = Object.values(child.properties ?? {}).some((p) => p.readOnly !== true);
    out.push({ path, key, depth, schema: child, defaultValue: value, section });
    if (section) out.push(...walkKeys(child, value, path, depth + 1));
  }
  return out;
}

/** A short type name for the README, e.g. `string (internal, internet-facing)`, `int 1-65535`. */
export function typeName(schema: JsonSchema): string {
  if (schema.enum) return `enum (${schema.enum.join(', ')})`;
  if (schema.anyOf) return schema.anyOf.map(typeName).join(' or ');
  const base = Array.isArray(schema.type) ? schema.type.join(' or ') : (schema.type ?? 'any');
  if (base === 'integer' || base === 'number') {
    const name = base === 'integer' ? 'int' : 'number';
    if (schema.minimum !== undefined && schema.maximum !== undefined) return `${name} ${schema.minimum}-${schema.maximum}`;
    if (schema.minimum !== undefined) return `${name} ≥${schema.minimum}`;
    return name;
  }
  if (base === 'array') return `list of ${schema.items ? typeName(schema.items) : 'any'}`;
  if (base === 'object') return schema.properties ? 'object (every key set by the chart)' : 'map';
  return base;
}

/** The description a key is documented with; objects the gateway schema left undescribed get a generic one. */
export function describe(key: ValueKey): string {
  if (key.schema.description) return key.schema.description;
  if (key.section) return `Settings under ${key.path}.`;
  throw new Error(`Value ${key.path} has no description; add .describe() to it in the model (gateway/src/config/schema.ts for config.*)`);
}
