/**
 * values.yaml: every default of the model, each key preceded by its
 * description as a comment.
 */
import YAML from 'yaml';
import { describe, walkKeys, type JsonSchema } from './json-schema';

const WIDTH = 110;

function wrap(text: string, prefix: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && prefix.length + line.length + 1 + word.length > WIDTH) {
      lines.push(prefix + line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(prefix + line);
  return lines;
}

export function renderValuesYaml(schema: JsonSchema, defaults: unknown, header: string): string {
  const out: string[] = [...header.trim().split('\n').map((l) => `# ${l}`.trimEnd())];
  for (const key of walkKeys(schema, defaults)) {
    const indent = '  '.repeat(key.depth);
    if (key.depth === 0) out.push('');
    out.push(...wrap(describe(key), `${indent}# `));
    if (key.section) {
      out.push(`${indent}${key.key}:`);
      continue;
    }
    const text = YAML.stringify({ [key.key]: key.defaultValue }, { lineWidth: 0, flowCollectionPadding: false }).trimEnd();
    out.push(...text.split('\n').map((l) => indent + l));
  }
  return `${out.join('\n')}\n`;
}
