/** The chart README's values table: one row per key, from the same walk as values.yaml. */
import { describe, typeName, walkKeys, type JsonSchema } from './json-schema';

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderValuesTable(schema: JsonSchema, defaults: unknown): string {
  const rows = walkKeys(schema, defaults)
    .filter((key) => !key.section)
    .map((key) => `| \`${key.path}\` | ${cell(typeName(key.schema))} | \`${cell(JSON.stringify(key.defaultValue))}\` | ${cell(describe(key))} |`);
  return ['| Key | Type | Default | Description |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
