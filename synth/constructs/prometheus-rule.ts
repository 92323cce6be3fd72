/**
 * The gateway's alerting rules (synth/monitoring/prometheus-rules.yaml, their
 * one source) as a Prometheus Operator PrometheusRule, each alert with a
 * runbook_url and the user's extra labels. Rendered only when enabled AND the
 * cluster serves the API, like the ServiceMonitor.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import YAML from 'yaml';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { NOT_CANARY, type ChartNames } from './names';
import { MONITORING_API } from './service-monitor';

export const RULES_FILE = join(__dirname, '..', 'monitoring', 'prometheus-rules.yaml');

export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export interface RuleGroup {
  readonly name: string;
  readonly rules: AlertRule[];
}

/** The rule groups of the source file; every rule must be an alert with a severity. */
export function alertGroups(file = RULES_FILE): RuleGroup[] {
  const groups = (YAML.parse(readFileSync(file, 'utf8')) as { groups?: RuleGroup[] }).groups;
  if (!Array.isArray(groups) || groups.length === 0) throw new Error(`${file} has no rule groups`);
  for (const rule of groups.flatMap((g) => g.rules)) {
    if (!rule.alert) throw new Error(`${file}: every rule must be an alert (got ${JSON.stringify(rule)})`);
    if (!rule.labels?.severity) throw new Error(`${file}: alert ${rule.alert} has no labels.severity`);
  }
  return groups;
}

/** Text Helm must write as it is: Prometheus templates ({{ $labels.x }}) in annotations. */
const literal = (text: string) => text.replaceAll('{{', '{{`{{`}}');

export interface PrometheusRuleProps {
  readonly names: ChartNames;
}

export class PrometheusRule extends Construct {
  static readonly TEMPLATE = 'prometheusrule.yaml';

  constructor(scope: Construct, id: string, props: PrometheusRuleProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const values = (key: string) => valueRef(`metrics.prometheusRule.${key}`);
    const groups = alertGroups().map((group) => ({
      name: group.name,
      rules: group.rules.map((rule) => {
        const labels = rule.labels ?? {};
        const ownLabels = Object.keys(labels).map((k) => JSON.stringify(k)).join(' ');
        return {
          alert: rule.alert,
          expr: literal(rule.expr.trim()),
          for: rule.for,
          labels: { ...labels, [t.splice(`omit ${values('ruleLabels')} ${ownLabels}`, { omitEmpty: true })]: '' },
          annotations: {
            ...Object.fromEntries(Object.entries(rule.annotations ?? {}).map(([k, v]) => [k, literal(v.trim())])),
            runbook_url: `${t.str(values('runbookBaseUrl'))}/${rule.alert}.md`,
          },
        };
      }),
    }));
    const object = new ApiObject(this, 'prometheusrule', {
      apiVersion: MONITORING_API,
      kind: 'PrometheusRule',
      metadata: { name: props.names.fullname(), labels: props.names.labels({}, values('labels')) },
      spec: { groups },
    });
    helm.template(object, {
      file: PrometheusRule.TEMPLATE,
      if: `and (${NOT_CANARY}) ${values('enabled')} (.Capabilities.APIVersions.Has "${MONITORING_API}/PrometheusRule")`,
    });
  }
}
