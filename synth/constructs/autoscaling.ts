/** HorizontalPodAutoscaler (autoscaling/v2) on CPU and, optionally, memory, with a scale-down stabilisation window. */
import { ApiObject, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { HPA_ENABLED, type ChartNames } from './names';

export interface AutoscalingProps {
  readonly names: ChartNames;
  readonly deployment: kplus.Deployment;
}

export class Autoscaling extends Construct {
  constructor(scope: Construct, id: string, props: AutoscalingProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const hpa = new kplus.HorizontalPodAutoscaler(this, 'hpa', {
      metadata: { name: props.names.fullname(), labels: props.names.labels() },
      target: props.deployment,
      // Created in this order so the marker numbers keep min ≤ max, which cdk8s-plus checks.
      minReplicas: t.int(valueRef('autoscaling.minReplicas')),
      maxReplicas: t.int(valueRef('autoscaling.maxReplicas')),
      metrics: [kplus.Metric.resourceCpu(kplus.MetricTarget.averageUtilization(t.int(valueRef('autoscaling.targetCPUUtilizationPercentage'))))],
    });
    const apiObject = ApiObject.of(hpa);
    helm.template(apiObject, { file: 'hpa.yaml', if: HPA_ENABLED });
    const memory = valueRef('autoscaling.targetMemoryUtilizationPercentage');
    helm.patch(
      apiObject,
      JsonPatch.replace('/spec/scaleTargetRef/name', props.names.fullname()),
      // cdk8s-plus range-checks this Duration at construction, before a reference could be resolved.
      // Remove one pod a minute at most: each removal drains SMTP sessions, and capacity should fall gently.
      JsonPatch.replace('/spec/behavior/scaleDown/policies', [{ type: 'Pods', value: 1, periodSeconds: 60 }]),
      JsonPatch.replace('/spec/behavior/scaleDown/stabilizationWindowSeconds', t.intString(valueRef('autoscaling.scaleDownStabilizationSeconds'))),
      JsonPatch.add(
        '/spec/metrics/-',
        t.when(memory, { type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: t.int(memory) } } }),
      ),
    );
  }
}
