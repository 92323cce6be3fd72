/** The values model: values.yaml, values.schema.json and the README table all come from it and agree. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../gateway/src/config/schema';
import { defaultValues, valuesJsonSchema, walkKeys, type JsonSchema } from '../values/json-schema';
import { valueRef } from '../values/ref';
import { CHART } from './support';

describe('values model', () => {
  const schema = valuesJsonSchema();

  it('closes every object with named keys, so a typo anywhere is an error', () => {
    const open: string[] = [];
    const visit = (node: JsonSchema, path: string) => {
      if (node.properties) {
        if (node.additionalProperties !== false) open.push(path || '(root)');
        for (const [k, child] of Object.entries(node.properties)) visit(child, path ? `${path}.${k}` : k);
      }
      for (const child of node.anyOf ?? []) visit(child, path);
    };
    visit(schema, '');
    expect(open).toEqual([]);
  });

  it("embeds the gateway's config schema: every gateway key is a chart key", () => {
    const gateway = z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema;
    const chartConfig = schema.properties!.config;
    const paths = (s: JsonSchema) => walkKeys(s, undefined).map((k) => k.path);
    expect(paths(chartConfig)).toEqual(paths(gateway));
  });

  it('writes values.yaml with every default and a comment above every key', () => {
    const text = readFileSync(join(CHART, 'values.yaml'), 'utf8');
    expect(YAML.parse(text)).toEqual(JSON.parse(JSON.stringify(defaultValues())));
    const lines = text.split('\n');
    const uncommented = lines.filter((line, i) => /^\s*[A-Za-z][\w.-]*:/.test(line) && !/^\s*#/.test(lines[i - 1] ?? ''));
    expect(uncommented).toEqual([]);
  });

  it('lists every leaf key in the chart README', () => {
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    for (const key of walkKeys(schema, defaultValues()).filter((k) => !k.section)) expect(readme).toContain(`| \`${key.path}\` |`);
  });

  it('refuses a construct reference to a key the model does not have', () => {
    expect(valueRef('autoscaling.minReplicas')).toBe('.Values.autoscaling.minReplicas');
    expect(() => valueRef('autoscaling.minReplica')).toThrow(/"minReplica" is unknown/);
  });
});
