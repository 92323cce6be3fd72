/**
 * The helm bridge on its own: quoting, indentation and conditionals, checked on the
 * template text and by rendering it with the real helm.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { TemplateEmitter, scalar } from '../helm/emit-template';
import { goLiteral } from '../helm/go-literal';
import { TokenRegistry } from '../helm/tokens';
import { run, tempDir, valuesFile } from './support';

/** Renders one template with real helm in a throw-away chart. */
function helmRender(template: string, values: Record<string, unknown>): { status: number; doc: any; stderr: string } {
  const chart = tempDir('bridge-chart');
  writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: bridge\nversion: 0.0.1\n');
  mkdirSync(join(chart, 'templates'));
  writeFileSync(join(chart, 'templates', 'doc.yaml'), template);
  const result = run('helm', ['template', 'r', chart, '--values', valuesFile(values)]);
  const body = result.stdout.replace(/^---\n# Source:.*\n/m, '');
  return { status: result.status, stderr: result.stderr, doc: result.status === 0 ? YAML.parse(body) : undefined };
}

describe('scalar quoting', () => {
  it.each([
    ['plain', 'plain'],
    ['', '""'],
    ['true', '"true"'],
    ['no', '"no"'],
    ['null', '"null"'],
    ['0755', '"0755"'],
    ['1e3', '"1e3"'],
    ['9090', '"9090"'],
    ['a: b', '"a: b"'],
    ['#comment', '"#comment"'],
    ['*', '"*"'],
    ['line\nbreak', '"line\\nbreak"'],
    ['/readyz', '/readyz'],
  ])('writes %j as %s', (input, expected) => {
    expect(scalar(input)).toBe(expected);
    expect(YAML.parse(`k: ${scalar(input)}`).k).toBe(input);
  });

  it('writes numbers and booleans bare and refuses NaN', () => {
    expect(scalar(25)).toBe('25');
    expect(scalar(false)).toBe('false');
    expect(() => scalar(Number.NaN)).toThrow(/NaN/);
  });
});

describe('references', () => {
  it('quotes strings, casts integers, leaves booleans bare', () => {
    const t = new TokenRegistry();
    const text = new TemplateEmitter(t).document({ a: t.str('.Values.s'), b: t.int('.Values.n'), c: t.bool('.Values.on') });
    expect(text).toBe('a: {{ .Values.s | quote }}\nb: {{ .Values.n | int }}\nc: {{ .Values.on }}\n');
    const { doc } = helmRender(text, { s: 'yes', n: 26214400, on: true });
    expect(doc).toEqual({ a: 'yes', b: 26214400, c: true });
  });

  it('keeps a marker number usable where cdk8s-plus expects a number', () => {
    const t = new TokenRegistry();
    const n = t.int('.Values.n');
    expect(typeof n).toBe('number');
    expect(t.whole(n)?.expr).toBe('.Values.n');
    expect(t.whole(n + 1)).toBeUndefined();
    expect(t.whole(25)).toBeUndefined();
  });

  it('puts maps and lists through toYaml at the indent where they stand', () => {
    const t = new TokenRegistry();
    const text = new TemplateEmitter(t).document({ spec: { template: { nodeSelector: t.yaml('.Values.sel'), tolerations: t.yaml('.Values.tol') } } });
    expect(text).toContain('    nodeSelector:\n      {{- toYaml .Values.sel | nindent 6 }}');
    const { doc } = helmRender(text, { sel: { zone: 'a', 'kubernetes.io/os': 'linux' }, tol: [{ key: 'k', operator: 'Exists' }] });
    expect(doc.spec.template).toEqual({ nodeSelector: { zone: 'a', 'kubernetes.io/os': 'linux' }, tolerations: [{ key: 'k', operator: 'Exists' }] });
  });

  it('leaves out an empty map or list entirely when asked', () => {
    const t = new TokenRegistry();
    const text = new TemplateEmitter(t).document({ spec: { keep: 1, affinity: t.yaml('.Values.affinity', { omitEmpty: true }) } });
    expect(helmRender(text, { affinity: {} }).doc).toEqual({ spec: { keep: 1 } });
    expect(helmRender(text, { affinity: { a: 1 } }).doc).toEqual({ spec: { keep: 1, affinity: { a: 1 } } });
  });

  it('writes multi-line text as a block scalar that survives YAML-special content', () => {
    const t = new TokenRegistry();
    const text = new TemplateEmitter(t).document({ data: { 'config.yaml': t.text('.Values.text') } });
    const content = 'a: 1\nb: "#x"\n  indented: - y';
    expect(helmRender(text, { text: content }).doc.data['config.yaml']).toBe(content);
  });

  it('splices template-made keys into a literal map and list', () => {
    const t = new TokenRegistry();
    const text = new TemplateEmitter(t).document({
      metadata: { labels: { [t.splice('.Values.extra', { omitEmpty: true })]: '', fixed: 'yes' } },
      env: [{ name: 'A', value: 'a' }, t.splice('.Values.env', { omitEmpty: true })],
    });
    expect(helmRender(text, { extra: { team: 'mail' }, env: [{ name: 'B', value: 'b' }] }).doc).toEqual({
      metadata: { labels: { team: 'mail', fixed: 'yes' } },
      env: [
        { name: 'A', value: 'a' },
        { name: 'B', value: 'b' },
      ],
    });
    expect(helmRender(text, { extra: {}, env: [] }).doc).toEqual({ metadata: { labels: { fixed: 'yes' } }, env: [{ name: 'A', value: 'a' }] });
  });

  it('joins references into names', () => {
    const t = new TokenRegistry();
    const text = new TemplateEmitter(t).document({ name: `${t.str('.Release.Name')}-smtp` });
    expect(text).toBe('name: {{ .Release.Name }}-smtp\n');
    expect(() => new TemplateEmitter(t).document({ name: `${t.str('.Release.Name')}: x` })).toThrow(/only name-safe text/);
  });

  it('refuses a reference where it cannot stand', () => {
    const t = new TokenRegistry();
    expect(() => new TemplateEmitter(t).document({ a: t.splice('.Values.x') })).toThrow(/must be a map key/);
    expect(() => new TemplateEmitter(t).document({ [t.str('.Values.x')]: 1 })).toThrow(/used as a map key/);
    expect(() => new TemplateEmitter(t).document({ list: [t.yaml('.Values.x')] })).toThrow(/cannot be a list item/);
    expect(() => new TemplateEmitter(new TokenRegistry()).document({ a: t.str('.Values.x') })).toThrow(/another TokenRegistry/);
  });
});

describe('conditionals', () => {
  const t = new TokenRegistry();
  const template = new TemplateEmitter(t).document(
    {
      spec: {
        replicas: t.int('.Values.replicas', { if: 'not .Values.hpa' }),
        ports: [t.when('.Values.a', { name: 'a', port: 1 }), { name: 'always', port: 2 }, t.when('.Values.b', { name: 'b', port: 3 })],
        maybe: [t.when('.Values.a', 'only-a')],
        annotations: { x: t.when('.Values.a', 'on') },
      },
    },
    '.Values.render',
  );

  it('wraps optional fields and list items in line-level conditionals', () => {
    expect(template).toContain('  {{- if not .Values.hpa }}\n  replicas: {{ .Values.replicas | int }}\n  {{- end }}');
    const on = helmRender(template, { render: true, hpa: false, replicas: 3, a: true, b: true }).doc;
    expect(on.spec.replicas).toBe(3);
    expect(on.spec.ports.map((p: any) => p.name)).toEqual(['a', 'always', 'b']);
    const off = helmRender(template, { render: true, hpa: true, replicas: 3, a: false, b: false }).doc;
    expect(off.spec).toEqual({ ports: [{ name: 'always', port: 2 }] });
  });

  it('drops a collection whose members are all absent instead of leaving it null', () => {
    const off = helmRender(template, { render: true, hpa: true, a: false, b: false }).doc;
    expect(off.spec).not.toHaveProperty('maybe');
    expect(off.spec).not.toHaveProperty('annotations');
  });

  it('wraps a whole resource', () => {
    const result = helmRender(template, { render: false });
    expect(result.status).toBe(0);
    expect(result.doc).toBeNull();
  });
});

describe('goLiteral', () => {
  it('writes nested data as dict and list calls helm evaluates to the same data', () => {
    const data = { port: 2525, name: 'a "quoted" name', on: true, list: ['x', 1], nested: { dir: '/tmp/x' } };
    const template = `{{- $v := ${goLiteral(data)} }}\nv: {{ toJson $v }}\n`;
    expect(helmRender(template, {}).doc.v).toEqual(data);
  });
});
