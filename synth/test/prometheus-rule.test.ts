/**
 * The alerting rules as the chart renders them: promtool checks them and runs
 * the unit tests of synth/monitoring/prometheus-rules.test.yaml against them
 * (so Helm's escaping of {{ $labels }} is tested too), they equal their one
 * source plus a runbook_url, and every runbook exists and is complete.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { RULES_FILE, alertGroups } from '../constructs/prometheus-rule';
import { defaultValues } from '../values/json-schema';
import { CI_VALUES, ROOT, render, run, tempDir } from './support';

const RULE_TESTS = join(ROOT, 'synth', 'monitoring', 'prometheus-rules.test.yaml');
const RUNBOOKS = join(ROOT, 'docs', 'runbooks');
const API = 'monitoring.coreos.com/v1/PrometheusRule';

function renderedRule(set: string[] = []): Record<string, any> {
  const docs = render({ values: [CI_VALUES.default], set: ['metrics.prometheusRule.enabled=true', ...set], apiVersions: [API] });
  const rule = docs.find((d) => d.kind === 'PrometheusRule');
  if (!rule) throw new Error('the chart rendered no PrometheusRule');
  return rule;
}

/** The rendered spec as a rule file next to a copy of the promtool tests. */
function ruleFileDir(spec: unknown): string {
  const dir = tempDir('rules');
  writeFileSync(join(dir, 'prometheus-rules.yaml'), YAML.stringify(spec));
  copyFileSync(RULE_TESTS, join(dir, 'prometheus-rules.test.yaml'));
  return dir;
}

describe('the PrometheusRule the chart renders', () => {
  const rule = renderedRule();
  const alerts = rule.spec.groups.flatMap((g: any) => g.rules) as Array<Record<string, any>>;

  it('passes promtool check rules', () => {
    const dir = ruleFileDir(rule.spec);
    const check = run('promtool', ['check', 'rules', join(dir, 'prometheus-rules.yaml')]);
    expect(check.stderr).toBe('');
    expect(check.stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(check.status).toBe(0);
  });

  it('passes the promtool unit tests: every alert fires on its situation and stays quiet on a healthy one', () => {
    const dir = ruleFileDir(rule.spec);
    const result = run('promtool', ['test', 'rules', join(dir, 'prometheus-rules.test.yaml')]);
    expect(result.stdout + result.stderr).toContain('SUCCESS');
    expect(result.status).toBe(0);
    const tests = (YAML.parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> }).tests.flatMap(
      (t) => t.alert_rule_test ?? [],
    );
    const fires = new Set(tests.filter((t) => t.exp_alerts.length > 0).map((t) => t.alertname));
    const quiet = new Set(tests.filter((t) => t.exp_alerts.length === 0).map((t) => t.alertname));
    const names = alerts.map((a) => a.alert).sort();
    expect([...fires].sort()).toEqual(names);
    expect([...quiet].sort()).toEqual(names);
  });

  it('the same unit tests fail against a broken rule, so they can fail', () => {
    const broken = structuredClone(rule.spec);
    broken.groups[0].rules[0].expr = 'vector(0) > 1';
    const result = run('promtool', ['test', 'rules', join(ruleFileDir(broken), 'prometheus-rules.test.yaml')]);
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toContain(broken.groups[0].rules[0].alert);
  });

  it('holds exactly the rules of the one source, each with a runbook_url added', () => {
    const base = defaultValues().metrics.prometheusRule.runbookBaseUrl;
    const expected = alertGroups().map((group) => ({
      name: group.name,
      rules: group.rules.map((r) => ({
        ...r,
        expr: r.expr.trim(),
        annotations: { ...Object.fromEntries(Object.entries(r.annotations ?? {}).map(([k, v]) => [k, v.trim()])), runbook_url: `${base}/${r.alert}.md` },
      })),
    }));
    expect(rule.spec.groups).toEqual(expected);
    expect(readFileSync(RULES_FILE, 'utf8')).toContain('{{ $labels.namespace }}');
  });

  it('adds ruleLabels to every alert and keeps each severity', () => {
    const labelled = renderedRule(['metrics.prometheusRule.ruleLabels.team=mail', 'metrics.prometheusRule.ruleLabels.severity=none']);
    for (const alert of labelled.spec.groups.flatMap((g: any) => g.rules)) {
      expect(alert.labels.team, alert.alert).toBe('mail');
      expect(['warning', 'critical'], alert.alert).toContain(alert.labels.severity);
    }
  });
});

describe('docs/runbooks', () => {
  const alerts = alertGroups().flatMap((g) => g.rules);

  it.each(alerts.map((a) => [a.alert]))('%s has a runbook for the on-call engineer: meaning, impact, diagnosis, fix', (alert) => {
    const file = join(RUNBOOKS, `${alert}.md`);
    expect(existsSync(file), file).toBe(true);
    const text = readFileSync(file, 'utf8');
    expect(text.split('\n')[0]).toBe(`# ${alert}`);
    for (const section of ['## Meaning', '## Impact', '## Diagnosis', '## Fix']) expect(text, `${alert}: ${section}`).toContain(`\n${section}\n`);
    // The diagnosis names the metric the alert is built on, and a command to run.
    const rule = alerts.find((a) => a.alert === alert)!;
    const metrics = rule.expr.match(/smtp_gateway_[a-z_]+?(?=_bucket\b|\{|\)|\[|\s|$)/g) ?? [];
    expect(metrics.some((m) => text.includes(m)), `${alert} runbook names ${metrics.join(', ')}`).toBe(true);
    expect(text).toMatch(/```(sh|promql)/);
  });

  it('has no runbook for an alert that does not exist', () => {
    const files = run('ls', [RUNBOOKS]).stdout.split('\n').filter((f) => f.endsWith('.md') && f !== 'README.md');
    expect(files.map((f) => f.replace(/\.md$/, '')).sort()).toEqual(alerts.map((a) => a.alert).sort());
  });
});
