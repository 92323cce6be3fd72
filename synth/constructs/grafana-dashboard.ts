/**
 * The Grafana dashboard (synth/monitoring/grafana-dashboard.json, copied into
 * the chart as a file) in a ConfigMap carrying the label the Grafana sidecar
 * of the Grafana chart (kube-prometheus-stack) loads dashboards by.
 */
import { join } from 'node:path';
import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { NOT_CANARY, type ChartNames } from './names';

/** The committed source of the dashboard. */
export const DASHBOARD_SOURCE = join(__dirname, '..', 'monitoring', 'grafana-dashboard.json');

export interface GrafanaDashboardProps {
  readonly names: ChartNames;
}

export class GrafanaDashboard extends Construct {
  static readonly TEMPLATE = 'grafana-dashboard.yaml';
  /** Where the dashboard sits inside the chart (read with .Files.Get, so Helm never parses its {{ }}). */
  static readonly CHART_FILE = 'dashboards/smtp-gateway.json';
  /** Its key in the ConfigMap: the file name the sidecar writes. */
  static readonly KEY = 'smtp-gateway.json';

  constructor(scope: Construct, id: string, props: GrafanaDashboardProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const values = (key: string) => valueRef(`metrics.grafanaDashboard.${key}`);
    const configMap = new ApiObject(this, 'configmap', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: props.names.component('dashboard'),
        labels: {
          ...props.names.labels({ 'app.kubernetes.io/component': 'dashboard' }),
          [t.splice(`dict ${values('label')} ${values('labelValue')}`, { omitEmpty: true })]: '',
        },
        annotations: { [t.splice(`dict ${values('folderAnnotation')} ${values('folder')}`, { omitEmpty: true, if: values('folder') })]: '' },
      },
      data: { [GrafanaDashboard.KEY]: t.text(`.Files.Get "${GrafanaDashboard.CHART_FILE}"`) },
    });
    helm.template(configMap, { file: GrafanaDashboard.TEMPLATE, if: `and (${NOT_CANARY}) ${values('enabled')}` });
  }
}
