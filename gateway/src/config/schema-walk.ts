/**
 * Reading the config schema itself: which keys an object has and what type a
 * leaf is, through zod's default/prefault/optional wrappers. Used to type
 * environment overrides and to list every setting in --help.
 */
import type { z } from 'zod';

/** Strips default/prefault/optional wrappers to reach the schema that says what the value is. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const def = current._zod.def as { type: string; innerType?: z.ZodType };
    if ((def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable') && def.innerType) {
      current = def.innerType;
    } else {
      return current;
    }
  }
}

export function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const inner = unwrap(schema) as z.ZodType & { shape?: Record<string, z.ZodType> };
  return inner._zod.def.type === 'object' ? inner.shape : undefined;
}

/** upstream.maxConnections → UPSTREAM__MAX_CONNECTIONS (without the SMTPGW_ prefix). */
export function envName(path: readonly string[]): string {
  return path.map((key) => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__');
}

export interface Leaf {
  readonly path: readonly string[];
  readonly schema: z.ZodType;
}

/** Every settable value of an object schema, depth first, in declaration order. */
export function leaves(schema: z.ZodType, path: readonly string[] = []): Leaf[] {
  const shape = objectShape(schema);
  if (!shape) return [{ path, schema }];
  return Object.entries(shape).flatMap(([key, child]) => leaves(child, [...path, key]));
}
