/**
 * Prometheus Operator ServiceMonitor for the metrics Service. Rendered only
 * when enabled AND the cluster serves the API, so installing on a cluster
 * without the operator never fails.
 */
import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { OPS_PATHS } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { MetricsService } from './metrics-service';
import { NOT_CANARY, type ChartNames } from './names';

export interface ServiceMonitorProps {
  readonly names: ChartNames;
}

export const MONITORING_API = 'monitoring.coreos.com/v1';

export class ServiceMonitor extends Construct {
  constructor(scope: Construct, id: string, props: ServiceMonitorProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const values = (key: string) => valueRef(`metrics.serviceMonitor.${key}`);
    const monitor = new ApiObject(this, 'servicemonitor', {
      apiVersion: MONITORING_API,
      kind: 'ServiceMonitor',
      metadata: { name: props.names.fullname(), labels: props.names.labels({}, values('labels')) },
      spec: {
        selector: { matchLabels: { ...props.names.selectorLabels(), 'app.kubernetes.io/component': MetricsService.COMPONENT } },
        endpoints: [
          {
            port: MetricsService.PORT_NAME,
            path: OPS_PATHS.metrics,
            interval: t.str(values('interval')),
            scrapeTimeout: t.str(values('scrapeTimeout')),
            relabelings: t.yaml(values('relabelings'), { omitEmpty: true }),
            metricRelabelings: t.yaml(values('metricRelabelings'), { omitEmpty: true }),
          },
        ],
      },
    });
    helm.template(monitor, {
      file: 'servicemonitor.yaml',
      if: `and (${NOT_CANARY}) ${values('enabled')} (.Capabilities.APIVersions.Has "${MONITORING_API}/ServiceMonitor")`,
    });
  }
}
