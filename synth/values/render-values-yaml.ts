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

/**
 * @param notes extra text appended to a key's description, by dotted path
 *              (e.g. which config keys the chart sets itself).
 */
export function renderValuesYaml(schema: JsonSchema, defaults: unknown, header: string, notes: Record<string, string> = {}): string {
  const out: string[] = [...header.trim().split('\n').map((l) => `# ${l}`.trimEnd())];
  const unused = new Set(Object.keys(notes));
  for (const key of walkKeys(schema, defaults)) {
    const indent = '  '.repeat(key.depth);
    if (key.depth === 0) out.push('');
    const note = notes[key.path];
    unused.delete(key.path);
    out.push(...wrap(note ? `${describe(key)} ${note}` : describe(key), `${indent}# `));
    if (key.section) {
      out.push(`${indent}${key.key}:`);
      continue;
    }
    const text = YAML.stringify({ [key.key]: key.defaultValue }, { lineWidth: 0, flowCollectionPadding: false }).trimEnd();
    out.push(...text.split('\n').map((l) => indent + l));
  }
  if (unused.size > 0) throw new Error(`Notes given for keys the model does not have: ${[...unused].join(', ')}`);
  return `${out.join('\n')}\n`;
}
