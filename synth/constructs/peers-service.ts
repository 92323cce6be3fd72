/**
 * A headless Service listing the ready gateway pods of the release (canary pods
 * included, as the SMTP Services route to them): its DNS A records are how each
 * pod counts its peers to take its share of config.upstream.accountMaxSendRate.
 * Rendered only when that rate is set.
 */
import { ApiObject, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { CONTAINER_PORTS, SERVICE_PORTS } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { OPS_PORT_NAME } from './listeners';
import { NOT_CANARY, type ChartNames } from './names';

export interface PeersServiceProps {
  readonly names: ChartNames;
}

/** Helm condition: the pods share an account rate. */
export const ACCOUNT_SHARE_ENABLED = '(gt (float64 (dig "upstream" "accountMaxSendRate" 0 (default (dict) .Values.config))) 0.0)';

export class PeersService extends Construct {
  /** The component label and name suffix; gateway-config.ts points the pods at it. */
  static readonly COMPONENT = 'peers';

  constructor(scope: Construct, id: string, props: PeersServiceProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const service = new kplus.Service(this, 'service', {
      metadata: {
        name: props.names.component(PeersService.COMPONENT),
        labels: props.names.labels({ 'app.kubernetes.io/component': PeersService.COMPONENT }),
      },
      clusterIP: 'None',
      ports: [{ name: 'ops', port: SERVICE_PORTS.ops, targetPort: CONTAINER_PORTS.ops, protocol: kplus.Protocol.TCP }],
    });
    const apiObject = ApiObject.of(service);
    helm.template(apiObject, { file: 'service-peers.yaml', if: `and (${NOT_CANARY}) ${ACCOUNT_SHARE_ENABLED}` });
    helm.patch(
      apiObject,
      JsonPatch.replace('/spec/ports/0/targetPort', OPS_PORT_NAME),
      // a pod that is not ready takes no mail, so it must not take a share of the rate either
      JsonPatch.add('/spec/publishNotReadyAddresses', false),
      JsonPatch.add('/spec/selector', props.names.serviceSelectorLabels()),
    );
  }
}
