/** An optional NetworkPolicy: only the SMTP ports and the ops port are reachable, each from the peers values allow. */
import { ApiObject, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { CONTAINER_PORTS } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { LISTENERS, anyEnabled, listenerEnabled } from './listeners';
import { TEST_COMPONENT } from './test-hook';
import { NOT_CANARY, type ChartNames } from './names';

/** The `helm test` pod of this release (see TestHook's labels). */
const TEST_POD_PEER = `(dict "podSelector" (dict "matchLabels" (dict "app.kubernetes.io/instance" .Release.Name "app.kubernetes.io/component" "${TEST_COMPONENT}")))`;

export interface NetworkPolicyProps {
  readonly names: ChartNames;
  readonly deployment: kplus.Deployment;
}

export class GatewayNetworkPolicy extends Construct {
  constructor(scope: Construct, id: string, props: NetworkPolicyProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const policy = new kplus.NetworkPolicy(this, 'networkpolicy', {
      metadata: { name: props.names.fullname(), labels: props.names.labels() },
      selector: props.deployment,
      ingress: { default: kplus.NetworkPolicyTrafficDefault.DENY },
    });
    const apiObject = ApiObject.of(policy);
    helm.template(apiObject, { file: 'networkpolicy.yaml', if: `and (${NOT_CANARY}) ${valueRef('networkPolicy.enabled')}` });
    const tcp = (port: number) => ({ port, protocol: 'TCP' });
    // When SMTP is restricted to some peers, the release's own `helm test` pod is one of them.
    const smtpFrom = valueRef('networkPolicy.smtpFrom');
    helm.patch(
      apiObject,
      JsonPatch.replace('/spec/podSelector', { matchLabels: props.names.serviceSelectorLabels() }),
      JsonPatch.replace('/spec/ingress', [
        // With every listener off the SMTP rule goes too (a rule without ports would open every port).
        t.when(anyEnabled(LISTENERS), {
          ports: LISTENERS.map((l) => t.when(listenerEnabled(l), tcp(l.containerPort))),
          from: t.yaml(`and ${smtpFrom} (append ${smtpFrom} ${TEST_POD_PEER})`, { omitEmpty: true }),
        }),
        { ports: [tcp(CONTAINER_PORTS.ops)], from: t.yaml(valueRef('networkPolicy.metricsFrom'), { omitEmpty: true }) },
      ]),
    );
  }
}
