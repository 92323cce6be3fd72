/**
 * Keeps the alerting rules and docs/metrics.md true to the metrics the gateway
 * really exports: every metric name the rules or the docs mention must exist
 * with the type and labels given. (promtool checks and unit-tests the rules as
 * the chart renders them: synth/test/prometheus-rule.test.ts.)
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createMetrics } from '../src/ops/metrics';

const RULES = 'synth/monitoring/prometheus-rules.yaml';
const DOCS = 'docs/metrics.md';

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }>;
}

/** name → { type, labels } of every smtp_gateway_ metric createMetrics registers. */
async function exported(): Promise<Map<string, { type: string; labels: string[] }>> {
  const metrics = createMetrics(new Registry());
  const result = new Map<string, { type: string; labels: string[] }>();
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    if (!metric.name.startsWith('smtp_gateway_')) continue;
    const labels = new Set<string>();
    for (const value of metric.values) for (const label of Object.keys(value.labels)) if (label !== 'le') labels.add(label);
    // Label names come from the declaration, not only from series that happen to exist.
    const declared = (metrics.registry.getSingleMetric(metric.name) as unknown as { labelNames?: string[] }).labelNames ?? [];
    for (const label of declared) labels.add(label);
    result.set(metric.name, { type: String(metric.type), labels: [...labels].sort() });
  }
  return result;
}

/** A sample or family name as written in PromQL or prose, mapped to the family it belongs to. */
function family(name: string, known: Map<string, unknown>): string | undefined {
  if (known.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return known.has(base) ? base : undefined;
}

describe('synth/monitoring/prometheus-rules.yaml', () => {
  const rules = parse(readFileSync(RULES, 'utf8')) as RuleFile;
  const alerts = rules.groups.flatMap((group) => group.rules).filter((rule) => rule.alert);

  it('has the alerts operators need: deferrals, upstream 5xx, no ready pods', () => {
    expect(alerts.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining(['SmtpGatewayHighDeferralRate', 'SmtpGatewayUpstreamRejecting', 'SmtpGatewayNoReadyPods']),
    );
  });

  it('refers only to metrics the gateway exports', async () => {
    const known = await exported();
    const referenced = new Set(alerts.flatMap((rule) => rule.expr.match(/smtp_gateway_[a-z0-9_]+/g) ?? []));
    expect(referenced.size).toBeGreaterThan(5);
    for (const name of referenced) expect(family(name, known), name).toBeDefined();
  });

  it('a rule file naming a metric that does not exist is caught by the same check', async () => {
    const known = await exported();
    expect(family('smtp_gateway_mesages_total', known)).toBeUndefined();
    expect(family('smtp_gateway_upstream_duration_seconds_bucket', known)).toBe('smtp_gateway_upstream_duration_seconds');
  });
});

describe('docs/metrics.md', () => {
  const docs = readFileSync(DOCS, 'utf8');

  it('lists every gateway metric with its real type and labels', async () => {
    const known = await exported();
    const rows = new Map<string, { type: string; labels: string[] }>();
    for (const match of docs.matchAll(/^\| `(smtp_gateway_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|/gm)) {
      const labels = [...match[3].matchAll(/`([a-z_]+)`/g)].map((label) => label[1]).sort();
      rows.set(match[1], { type: match[2], labels });
    }
    expect([...rows.keys()].sort()).toEqual([...known.keys()].sort());
    for (const [name, row] of rows) expect(row, name).toEqual(known.get(name));
  });

  it('mentions no smtp_gateway_ metric that does not exist', async () => {
    const known = await exported();
    for (const name of new Set(docs.match(/smtp_gateway_[a-z0-9_]+/g) ?? [])) {
      if (name.endsWith('_')) continue; // the prefix itself
      expect(family(name, known), name).toBeDefined();
    }
  });
});
