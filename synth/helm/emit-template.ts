/**
 * Writes a synthesised manifest (plain JSON holding value references) as Helm
 * template text: block-style YAML in which each reference becomes the template
 * expression for its kind at the indent where it stands, and conditional
 * entries, list items and whole resources sit between `{{- if }}` lines.
 */
import type { Token, TokenRegistry } from './tokens';

const INDENT = 2;
/** Strings YAML reads back as the same string when written bare. */
const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./:@%+-]*$/;
/** Text that may be joined to a template expression in a bare scalar (names, paths, host:port). */
const NAME_SAFE = /^[A-Za-z0-9_./:@%+-]+$/;
/** Bare words YAML 1.1/1.2 would read as something other than a string. */
const AMBIGUOUS = /^(true|false|yes|no|on|off|y|n|null|~|[-+]?(\.inf|\.nan)|[-+]?[0-9][0-9_.:eExXoObB+-]*)$/i;

export function scalar(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`Cannot write the number ${value} into a manifest`);
    return String(value);
  }
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return PLAIN.test(value) && !AMBIGUOUS.test(value) ? value : JSON.stringify(value);
  throw new Error(`Expected a scalar, got ${JSON.stringify(value)}`);
}

const pad = (n: number) => ' '.repeat(n);

/** Wraps lines in a Go template condition; `{{-` eats the newline before it so no blank line is left. */
function wrapIf(condition: string | undefined, lines: string[], indent: number): string[] {
  if (!condition) return lines;
  return [`${pad(indent)}{{- if ${condition} }}`, ...lines, `${pad(indent)}{{- end }}`];
}

export class TemplateEmitter {
  constructor(private readonly tokens: TokenRegistry) {}

  /** One manifest as template text, optionally present only when `condition` holds. */
  document(manifest: Record<string, unknown>, condition?: string): string {
    const body = this.mapEntries(manifest, 0);
    const lines = condition ? [`{{- if ${condition} }}`, ...body, '{{- end }}'] : body;
    return `${lines.join('\n')}\n`;
  }

  /** A string that may hold references inline (`{{ include "x.fullname" . }}-smtp`). */
  inlineString(value: string): string {
    const parts = this.tokens.parts(value);
    if (parts.length === 1 && typeof parts[0] === 'string') return scalar(value);
    return parts
      .map((part) => {
        if (typeof part === 'string') {
          if (!NAME_SAFE.test(part)) {
            throw new Error(`Cannot write "${part}" next to a template expression in ${JSON.stringify(value)}: only name-safe text may be joined to a reference`);
          }
          return part;
        }
        if (part.kind !== 'string') throw new Error(`A ${part.kind} reference (${part.expr}) cannot stand inside the string ${JSON.stringify(value)}`);
        return `{{ ${part.expr} }}`;
      })
      .join('');
  }

  private mapEntries(map: Record<string, unknown>, indent: number): string[] {
    const lines: string[] = [];
    for (const [key, value] of Object.entries(map)) {
      if (value === undefined) continue;
      const keyToken = this.tokens.whole(key);
      if (keyToken) {
        lines.push(...this.splice(keyToken, indent));
        continue;
      }
      lines.push(...this.entry(key, value, indent));
    }
    return lines;
  }

  private splice(token: Token, indent: number): string[] {
    if (token.kind !== 'splice') throw new Error(`A ${token.kind} reference (${token.expr}) was used as a map key; only splice references can be`);
    const lines = token.omitEmpty
      ? [`${pad(indent)}{{- with ${token.expr} }}`, `${pad(indent)}{{- toYaml . | nindent ${indent} }}`, `${pad(indent)}{{- end }}`]
      : [`${pad(indent)}{{- ${token.expr} | nindent ${indent} }}`];
    return wrapIf(token.if, lines, indent);
  }

  private entry(key: string, value: unknown, indent: number): string[] {
    const head = `${pad(indent)}${scalar(key)}:`;
    const token = this.tokens.whole(value);
    if (token) return wrapIf(token.if, this.tokenEntry(head, token, indent), indent);
    return [...this.valueLines(head, value, indent)];
  }

  private tokenEntry(head: string, token: Token, indent: number): string[] {
    const inner = indent + INDENT;
    switch (token.kind) {
      case 'string':
        return [`${head} {{ ${token.expr} | quote }}`];
      case 'int':
        return [`${head} {{ ${token.expr} | int }}`];
      case 'bool':
        return [`${head} {{ ${token.expr} }}`];
      case 'inline':
        return [`${head} {{ ${token.expr} | toYaml }}`];
      case 'text':
        return [`${head} |-`, `${pad(inner)}{{- ${token.expr} | nindent ${inner} }}`];
      case 'yaml':
        return token.omitEmpty
          ? [`${pad(indent)}{{- with ${token.expr} }}`, head, `${pad(inner)}{{- toYaml . | nindent ${inner} }}`, `${pad(indent)}{{- end }}`]
          : [head, `${pad(inner)}{{- toYaml ${token.expr} | nindent ${inner} }}`];
      case 'literal':
        return this.valueLines(head, token.value, indent);
      case 'splice':
        throw new Error(`A splice reference (${token.expr}) must be a map key, not the value of ${head.trim()}`);
    }
  }

  /**
   * The condition under which a map entry or list item is present (undefined: always). A splice that
   * leaves out empty values is present when its expression is not empty.
   */
  private presence(keyOrItem: unknown): string | undefined {
    const token = this.tokens.whole(keyOrItem);
    if (!token) return undefined;
    if (token.if) return token.if;
    if (token.omitEmpty) return token.expr;
    return undefined;
  }

  /**
   * A collection whose members are all conditional is itself conditional: otherwise the key would be
   * left with no value (null), which Kubernetes rejects.
   */
  private collectionPresence(members: unknown[]): string | undefined {
    if (members.length === 0) return undefined;
    const conditions = members.map((m) => this.presence(m));
    if (conditions.some((c) => c === undefined)) return undefined;
    const unique = [...new Set(conditions as string[])];
    return unique.length === 1 ? unique[0] : `or ${unique.map((c) => `(${c})`).join(' ')}`;
  }

  /** `head` followed by the value: inline for scalars and empty collections, nested lines otherwise. */
  private valueLines(head: string, value: unknown, indent: number): string[] {
    if (Array.isArray(value)) {
      if (value.length === 0) return [`${head} []`];
      return wrapIf(this.collectionPresence(value), [head, ...this.listItems(value, indent + INDENT)], indent);
    }
    if (value !== null && typeof value === 'object') {
      const members = Object.entries(value).filter(([, v]) => v !== undefined);
      const entries = this.mapEntries(value as Record<string, unknown>, indent + INDENT);
      if (entries.length === 0) return [`${head} {}`];
      const presence = this.collectionPresence(members.map(([k, v]) => (this.tokens.whole(k) ? k : v)));
      return wrapIf(presence, [head, ...entries], indent);
    }
    if (typeof value === 'string') return [`${head} ${this.inlineString(value)}`];
    return [`${head} ${scalar(value)}`];
  }

  private listItems(items: unknown[], indent: number): string[] {
    const lines: string[] = [];
    for (const item of items) {
      const token = this.tokens.whole(item);
      if (token?.kind === 'splice') {
        lines.push(...this.splice(token, indent));
        continue;
      }
      if (token && token.kind !== 'literal') {
        const line = this.tokenEntry(`${pad(indent)}-`, token, indent);
        if (line.length !== 1) throw new Error(`A ${token.kind} reference (${token.expr}) cannot be a list item; reference the whole list instead`);
        lines.push(...wrapIf(token.if, line, indent));
        continue;
      }
      lines.push(...wrapIf(token?.if, this.listItem(token ? token.value : item, indent), indent));
    }
    return lines;
  }

  private listItem(value: unknown, indent: number): string[] {
    const dash = `${pad(indent)}-`;
    if (Array.isArray(value)) return value.length === 0 ? [`${dash} []`] : [dash, ...this.listItems(value, indent + INDENT)];
    if (value !== null && typeof value === 'object') {
      const entries = this.mapEntries(value as Record<string, unknown>, indent + INDENT);
      if (entries.length === 0) return [`${dash} {}`];
      // The first key shares the dash's line unless it is a template line (whose `{{-` would eat the dash's space).
      const first = entries[0].slice(indent + INDENT);
      if (first.startsWith('{{')) return [dash, ...entries];
      return [`${dash} ${first}`, ...entries.slice(1)];
    }
    if (typeof value === 'string') return [`${dash} ${this.inlineString(value)}`];
    return [`${dash} ${scalar(value)}`];
  }
}
