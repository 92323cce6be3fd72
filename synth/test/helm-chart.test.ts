/** HelmChart's own guarantees: every ApiObject placed, named templates consistent, files grouped. */
import { ApiObject, App } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { HelmChart } from '../helm/helm-chart';

describe('HelmChart', () => {
  it('refuses an ApiObject that was not placed in a template file', () => {
    const chart = new HelmChart(new App(), 'x');
    new ApiObject(chart, 'lost', { apiVersion: 'v1', kind: 'ConfigMap' });
    expect(() => chart.templates()).toThrow(/x\/lost \(ConfigMap\) was not placed in a template file/);
  });

  it('groups objects sharing a file as YAML documents, each under its own condition', () => {
    const chart = new HelmChart(new App(), 'x');
    chart.template(new ApiObject(chart, 'a', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }), { file: 'both.yaml' });
    chart.template(new ApiObject(chart, 'b', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'b' } }), { file: 'both.yaml', if: '.Values.b' });
    const text = chart.templates().get('both.yaml')!;
    expect(text).toContain('kind: ConfigMap\nmetadata:\n  name: a\n---\n{{- if .Values.b }}\napiVersion: v1\nkind: Secret');
  });

  it('refuses a bad template file name', () => {
    const chart = new HelmChart(new App(), 'x');
    const object = new ApiObject(chart, 'a', { apiVersion: 'v1', kind: 'ConfigMap' });
    expect(() => chart.template(object, { file: 'Deployment.yml' })).toThrow(/lower-case and end in .yaml, got "Deployment.yml"/);
  });

  it('keeps named templates consistent and refuses an include of an undefined one', () => {
    const chart = new HelmChart(new App(), 'x');
    expect(chart.define('name', 'a')).toBe('x.name');
    expect(() => chart.define('name', 'a')).not.toThrow();
    expect(() => chart.define('name', 'b')).toThrow(/"x.name" is defined twice/);
    expect(chart.include('name')).toBe('include "x.name" .');
    expect(() => chart.include('missing')).toThrow(/"x.missing" is not defined/);
    expect(chart.helpers()).toBe('{{- define "x.name" -}}\na\n{{- end }}\n');
  });

  it('finds the chart a construct belongs to', () => {
    const chart = new HelmChart(new App(), 'x');
    const object = new ApiObject(chart, 'a', { apiVersion: 'v1', kind: 'ConfigMap' });
    expect(HelmChart.of(object)).toBe(chart);
  });
});
