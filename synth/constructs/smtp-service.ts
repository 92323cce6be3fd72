/**
 * One listener group as a Service: ClusterIP for in-cluster clients, or an
 * AWS NLB through the AWS Load Balancer Controller (target type ip, client IP
 * preserved, health-checked on /readyz so a draining pod leaves the NLB at once).
 */
import { ApiObject, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { CONTAINER_PORTS, OPS_PATHS } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { groupEnabled, listenerEnabled, listenersOf, servicePort, type ServiceGroup } from './listeners';
import { NOT_CANARY, type ChartNames } from './names';

export interface SmtpServiceProps {
  readonly names: ChartNames;
  /** Which listeners this Service publishes (services.<group> in values). */
  readonly group: ServiceGroup;
}

const AWS = 'service.beta.kubernetes.io/aws-load-balancer';

export class SmtpService extends Construct {
  constructor(scope: Construct, id: string, props: SmtpServiceProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const values = (key: string) => valueRef(`services.${props.group}.${key}`);
    const isLb = `eq ${values('type')} "LoadBalancer"`;
    const lb = (value: string) => t.when(isLb, value);
    const chartAnnotations: Record<string, string> = {
      [`${AWS}-type`]: lb('external'),
      [`${AWS}-nlb-target-type`]: lb('ip'),
      [`${AWS}-scheme`]: t.str(values('loadBalancer.scheme'), { if: isLb }),
      // With PROXY v2 the header carries the client's address, and the NLB's own must be the TCP peer: the
      // gateway takes a PROXY header only from config.proxyProtocol.trustedNetworks.
      [`${AWS}-target-group-attributes`]: t.str(
        `printf "preserve_client_ip.enabled=%t" (and ${values('loadBalancer.preserveClientIp')} (not ${valueRef('config.proxyProtocol.enabled')}))`,
        { if: isLb },
      ),
      // The gateway expects PROXY v2 on every listener once config.proxyProtocol is on, so the NLB must send it.
      [`${AWS}-proxy-protocol`]: t.when(`and (${isLb}) ${valueRef('config.proxyProtocol.enabled')}`, '*'),
      [`${AWS}-healthcheck-protocol`]: lb('HTTP'),
      [`${AWS}-healthcheck-port`]: lb(String(CONTAINER_PORTS.ops)),
      [`${AWS}-healthcheck-path`]: lb(OPS_PATHS.readiness),
    };
    const owned = Object.keys(chartAnnotations).map((k) => JSON.stringify(k)).join(' ');
    const service = new kplus.Service(this, 'service', {
      metadata: {
        name: props.names.component(props.group),
        labels: props.names.labels({ 'app.kubernetes.io/component': props.group }),
        annotations: {
          ...chartAnnotations,
          // User annotations may add keys but not repeat the chart's (a duplicate key is invalid YAML).
          [t.splice(`omit ${values('annotations')} ${owned}`, { omitEmpty: true })]: '',
        },
      },
      ports: [{ port: 1 }],
    });
    const apiObject = ApiObject.of(service);
    helm.template(apiObject, { file: `service-${props.group}.yaml`, if: `and (${NOT_CANARY}) ${values('enabled')} ${groupEnabled(props.group)}` });
    helm.patch(
      apiObject,
      JsonPatch.replace('/spec/type', t.str(values('type'))),
      JsonPatch.replace(
        '/spec/ports',
        listenersOf(props.group).map((l) =>
          t.when(listenerEnabled(l), { name: l.portName, port: t.int(servicePort(l)), targetPort: l.portName, protocol: 'TCP' }),
        ),
      ),
      JsonPatch.add('/spec/selector', props.names.serviceSelectorLabels()),
      JsonPatch.add('/spec/loadBalancerSourceRanges', t.yaml(values('loadBalancer.sourceRanges'), { omitEmpty: true, if: isLb })),
      JsonPatch.add('/spec/externalTrafficPolicy', t.str(values('externalTrafficPolicy'), { if: isLb })),
      JsonPatch.add('/spec/loadBalancerClass', t.str(values('loadBalancerClass'), { if: `and (${isLb}) ${values('loadBalancerClass')}` })),
    );
  }
}
