/** The values model: values.yaml, values.schema.json and the README table all come from it and agree. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../gateway/src/config/schema';
import { defaultValues, valuesJsonSchema, walkKeys, type JsonSchema } from '../values/json-schema';
import { CHART_OWNED_CONFIG } from '../values/chart-owned-config';
import { valueRef } from '../values/ref';
import { CHART } from './support';

describe('values model', () => {
  const schema = valuesJsonSchema();

  it('closes every object with named keys, so a typo anywhere is an error', () => {
    // Helm hands global to every chart of an umbrella release, with whatever keys the others use.
    const open: string[] = [];
    const visit = (node: JsonSchema, path: string) => {
      if (node.properties) {
        if (node.additionalProperties !== false) open.push(path || '(root)');
        for (const [k, child] of Object.entries(node.properties)) visit(child, path ? `${path}.${k}` : k);
      }
      for (const child of node.anyOf ?? []) visit(child, path);
    };
    visit(schema, '');
    expect(open).toEqual(['global']);
  });

  it("embeds the gateway's config schema: every gateway key is a chart key, except those the chart owns", () => {
    const gateway = z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema;
    const chartConfig = schema.properties!.config;
    const leaves = (s: JsonSchema) => walkKeys(s, undefined).filter((k) => !k.section).map((k) => k.path);
    const owned = Object.keys(CHART_OWNED_CONFIG);
    expect(owned).toHaveLength(13);
    const gatewayLeaves = leaves(gateway);
    const chartLeaves = leaves(chartConfig);
    expect(chartLeaves.filter((p) => gatewayLeaves.includes(p))).toEqual(gatewayLeaves.filter((p) => !owned.includes(p)));
    // Objects whose every key is the chart's stay, as {}, so `config.ops.port` is refused with its message.
    expect(chartLeaves.filter((p) => !gatewayLeaves.includes(p))).toEqual(['ops']);
  });

  it('marks each key the chart owns readOnly, leaves it out of values.yaml and the README table, and documents it', () => {
    const values = YAML.parse(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    for (const [path, hint] of Object.entries(CHART_OWNED_CONFIG)) {
      const parts = path.split('.');
      const node = parts.reduce<JsonSchema | undefined>((at, key) => at?.properties?.[key], schema.properties!.config);
      expect(node?.readOnly, path).toBe(true);
      expect(parts.reduce<any>((at, key) => at?.[key], values.config), path).toBeUndefined();
      const [owns, valuesTable] = readme.split('\n## Values\n');
      expect(valuesTable).not.toContain(`\`config.${path}\``);
      expect(owns).toContain(`| \`config.${path}\` | ${hint} |`);
    }
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
