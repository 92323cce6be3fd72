/**
 * The Grafana dashboard queries only what the gateway really exports: a real
 * gateway relays a message to a real upstream over loopback, /metrics is
 * scraped over HTTP, and every metric name in every panel query (and template
 * variable) must be a sample name of that scrape. The chart ships the source
 * file unchanged.
 */
import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPS_PATHS } from '../../gateway/src/config/constants';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { DASHBOARD_SOURCE, GrafanaDashboard } from '../constructs/grafana-dashboard';
import { CI_VALUES, render } from './support';

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Array<{ expr: string }>;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_SOURCE, 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: string | { query: string } }> };
};

/** PromQL words that are not metric names. */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** Metric names in a PromQL expression (or a Grafana label_values() query): selectors, not functions, labels or strings. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    // label_values(metric, label): the second argument is a label
    .replace(/(label_values\s*\([^,()]*),[^)]*\)/g, '$1)');
  const names: string[] = [];
  for (const match of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = stripped.slice(match.index + match[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return names;
}

/**
 * Names a query may use against an exposition text: every sample name, and every family declared with
 * # TYPE (a labelled counter has no sample before its first event), histograms as _bucket, _sum and _count.
 */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      const suffixes = type[2] === 'histogram' ? ['_bucket', '_sum', '_count'] : type[2] === 'summary' ? ['', '_sum', '_count'] : [''];
      for (const suffix of suffixes) names.add(type[1] + suffix);
    } else if (line && !line.startsWith('#')) {
      names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
    }
  }
  return names;
}

const queries = (): Array<{ where: string; expr: string }> => [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr }))),
  ...dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => ({ where: `variable $${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query!.query })),
];

describe('the Grafana dashboard', () => {
  let upstream: RecordingUpstream;
  let gateway: TestGateway;
  let scraped: Set<string>;

  beforeAll(async () => {
    upstream = await startRecordingUpstream({});
    gateway = await startTestGateway({ upstreamPort: upstream.port });
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: gateway.relayPort, ignoreTLS: true });
    try {
      await client.sendMail({ from: 'app@example.com', to: 'user@example.org', subject: 'dashboard', text: 'hello' });
    } finally {
      client.close();
    }
    expect(upstream.messages).toHaveLength(1);
    const response = await fetch(`http://127.0.0.1:${gateway.opsPort}${OPS_PATHS.metrics}`);
    expect(response.status).toBe(200);
    scraped = exportedNames(await response.text());
  });

  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('names in every panel query and variable only metrics a running gateway exports', () => {
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(10);
    for (const panel of panels) expect(panel.targets?.length ?? 0, `panel "${panel.title}" has no query`).toBeGreaterThan(0);
    const checked = new Set<string>();
    for (const { where, expr } of queries()) {
      const names = metricNames(expr);
      expect(names.length, `${where}: no metric in ${expr}`).toBeGreaterThan(0);
      for (const name of names) {
        expect(scraped.has(name), `${where} queries ${name}, which the gateway does not export`).toBe(true);
        checked.add(name);
      }
    }
    // the relay's own families, not only the process ones
    expect([...checked].filter((n) => n.startsWith('smtp_gateway_')).length).toBeGreaterThan(10);
  });

  it('the check catches a misspelled metric and reads selectors, histograms and label lists right', () => {
    expect(metricNames('sum by (outcome) (rate(smtp_gateway_mesages_total{outcome!="relayed", pod=~"$pod"}[$__rate_interval]))')).toEqual([
      'smtp_gateway_mesages_total',
    ]);
    expect(scraped.has('smtp_gateway_mesages_total')).toBe(false);
    expect(scraped.has('smtp_gateway_upstream_duration_seconds')).toBe(false);
    expect(scraped.has('smtp_gateway_upstream_duration_seconds_bucket')).toBe(true);
    expect(
      metricNames('histogram_quantile(0.95, sum by (le) (rate(smtp_gateway_upstream_duration_seconds_bucket[5m]))) / on (job) group_left x_total'),
    ).toEqual(['smtp_gateway_upstream_duration_seconds_bucket', 'x_total']);
    expect(metricNames('label_values(smtp_gateway_build_info{namespace=~"$namespace"}, pod)')).toEqual(['smtp_gateway_build_info']);
  });

  it('has unique panel ids, a stable uid and a data source variable', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.uid).toBe('smtp-gateway');
    expect(dashboard.templating.list.map((v) => v.name)).toContain('datasource');
  });

  it('is shipped by the chart byte for byte', () => {
    const docs = render({ values: [CI_VALUES.default], set: ['metrics.grafanaDashboard.enabled=true'] });
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.labels?.grafana_dashboard === '1');
    expect(configMap?.data[GrafanaDashboard.KEY]).toBe(readFileSync(DASHBOARD_SOURCE, 'utf8').trimEnd());
  });
});
