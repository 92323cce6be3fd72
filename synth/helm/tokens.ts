/**
 * Value references: placeholders that constructs put where a literal would go
 * (a cdk8s-plus prop, a JSON patch) and that the emitter turns into Helm
 * template text. A reference to a string or structure is a marker string; a
 * reference to a number is a marker number, because cdk8s-plus props typed as
 * numbers (and Durations built from them) must still be numbers at synth time.
 */

/** How a reference is written into the template. */
export type TokenKind =
  /** A string: `key: {{ expr | quote }}`; inline inside a larger string: `{{ expr }}`. */
  | 'string'
  /** An integer: `key: {{ expr | int }}` (values are float64 in Helm; `int` keeps 26214400 out of e-notation). */
  | 'int'
  /** A boolean: `key: {{ expr }}`. */
  | 'bool'
  /** Any YAML value on one line: `key: {{ expr | toYaml }}` (e.g. int-or-string). */
  | 'inline'
  /** A map or list: `key:` then `{{- toYaml expr | nindent N }}`; with omitEmpty the key goes too when empty. */
  | 'yaml'
  /** Multi-line text: `key: |-` then `{{- expr | nindent N }}`. */
  | 'text'
  /** A literal JSON value that is present only under a condition (see `when`). */
  | 'literal'
  /** Map keys spliced in from a template (`{{- expr | nindent N }}`); used as a map KEY. */
  | 'splice';

export interface Token {
  readonly id: number;
  readonly kind: TokenKind;
  /** The Go template expression (no braces). */
  readonly expr: string;
  /** Line-level condition: the map entry or list item holding this token is wrapped in `{{- if cond }}`. */
  readonly if?: string;
  /** For 'yaml' and 'splice': leave the key (or the spliced keys) out when the value is empty. */
  readonly omitEmpty?: boolean;
  /** For 'literal': the value emitted under the condition. */
  readonly value?: unknown;
}

export interface TokenOptions {
  /** Emit the holding map entry or list item only when this Go template condition is true. */
  readonly if?: string;
  /** Leave the key out when the value is empty (maps and lists, via `with`). */
  readonly omitEmpty?: boolean;
}

const MARKER = /@@H(\d+)@@/g;
const MARKER_WHOLE = /^@@H(\d+)@@$/;
/** Marker numbers live far above any real count, port or duration in a manifest. */
const NUMBER_BASE = 7_340_000_000;

/**
 * Holds the references made during one synth. Create one per chart so two
 * synths (e.g. in tests) never share ids and output stays deterministic.
 */
export class TokenRegistry {
  private readonly tokens: Token[] = [];

  private add(kind: TokenKind, expr: string, options: TokenOptions & { value?: unknown } = {}): Token {
    const token: Token = { id: this.tokens.length, kind, expr, ...options };
    this.tokens.push(token);
    return token;
  }

  private marker(token: Token): string {
    return `@@H${token.id}@@`;
  }

  /** A string reference, e.g. `str('.Values.image.pullPolicy')`. */
  str(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('string', expr, options));
  }

  /** A boolean reference (a marker string; set it through a JSON patch where the prop is typed boolean). */
  bool(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('bool', expr, options));
  }

  /** An integer reference that can stand where a number is typed. */
  int(expr: string, options?: TokenOptions): number {
    return NUMBER_BASE + this.add('int', expr, options).id;
  }

  /** An integer reference as a marker string (for JSON patches). */
  intString(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('int', expr, options));
  }

  /** A single-line YAML value of any type, e.g. an int-or-string. */
  inline(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('inline', expr, options));
  }

  /** A map or list rendered with toYaml at the right indent. */
  yaml(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('yaml', expr, options));
  }

  /** Multi-line text (a file inside a ConfigMap) rendered as a block scalar. */
  text(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('text', expr, options));
  }

  /** A literal value present only when `condition` holds (a volume, a port, a metric). */
  when<T>(condition: string, value: T): T {
    return this.marker(this.add('literal', '', { if: condition, value })) as unknown as T;
  }

  /** A map key whose entries come from a template, e.g. `include "x.labels" .` or `.Values.podLabels`. */
  splice(expr: string, options?: TokenOptions): string {
    return this.marker(this.add('splice', expr, options));
  }

  /** The token a whole string or number stands for, if it is exactly one marker. */
  whole(value: unknown): Token | undefined {
    if (typeof value === 'number') {
      const id = value - NUMBER_BASE;
      return Number.isInteger(id) && id >= 0 && id < this.tokens.length ? this.tokens[id] : undefined;
    }
    if (typeof value !== 'string') return undefined;
    const match = MARKER_WHOLE.exec(value);
    return match ? this.get(Number(match[1])) : undefined;
  }

  /** Splits a string into literal text and tokens. */
  parts(value: string): Array<string | Token> {
    const out: Array<string | Token> = [];
    let last = 0;
    for (const match of value.matchAll(MARKER)) {
      if (match.index > last) out.push(value.slice(last, match.index));
      out.push(this.get(Number(match[1])));
      last = match.index + match[0].length;
    }
    if (last < value.length) out.push(value.slice(last));
    return out;
  }

  private get(id: number): Token {
    const token = this.tokens[id];
    if (!token) throw new Error(`Unknown helm reference @@H${id}@@: it was made by another TokenRegistry`);
    return token;
  }
}
