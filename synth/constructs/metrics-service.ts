/** A ClusterIP Service for the ops port, so Prometheus (or a ServiceMonitor) can find every pod's /metrics. */
import { ApiObject, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { CONTAINER_PORTS, SERVICE_PORTS } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { OPS_PORT_NAME } from './listeners';
import { NOT_CANARY, type ChartNames } from './names';

export interface MetricsServiceProps {
  readonly names: ChartNames;
}

export class MetricsService extends Construct {
  /** The component label the ServiceMonitor selects on. */
  static readonly COMPONENT = 'metrics';
  /** The Service's port name, for the ServiceMonitor endpoint. */
  static readonly PORT_NAME = 'metrics';

  constructor(scope: Construct, id: string, props: MetricsServiceProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const service = new kplus.Service(this, 'service', {
      metadata: {
        name: props.names.component(MetricsService.COMPONENT),
        labels: props.names.labels({ 'app.kubernetes.io/component': MetricsService.COMPONENT }),
      },
      type: kplus.ServiceType.CLUSTER_IP,
      ports: [{ name: MetricsService.PORT_NAME, port: SERVICE_PORTS.ops, targetPort: CONTAINER_PORTS.ops, protocol: kplus.Protocol.TCP }],
    });
    const apiObject = ApiObject.of(service);
    helm.template(apiObject, { file: 'service-metrics.yaml', if: NOT_CANARY });
    helm.patch(
      apiObject,
      JsonPatch.replace('/spec/ports/0/targetPort', OPS_PORT_NAME),
      JsonPatch.add('/spec/selector', props.names.serviceSelectorLabels()),
    );
  }
}
