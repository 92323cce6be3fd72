/** PodDisruptionBudget (policy/v1); cdk8s-plus has no construct for it, so the raw import. */
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { NOT_CANARY, type ChartNames } from './names';

export interface DisruptionBudgetProps {
  readonly names: ChartNames;
}

export class DisruptionBudget extends Construct {
  constructor(scope: Construct, id: string, props: DisruptionBudgetProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const pdb = new k8s.KubePodDisruptionBudget(this, 'pdb', {
      metadata: { name: props.names.fullname(), labels: props.names.labels() },
      spec: {
        maxUnavailable: k8s.IntOrString.fromString(helm.tokens.inline(valueRef('podDisruptionBudget.maxUnavailable'))),
        selector: { matchLabels: props.names.selectorLabels() },
      },
    });
    helm.template(pdb, { file: 'pdb.yaml', if: `and (${NOT_CANARY}) ${valueRef('podDisruptionBudget.enabled')}` });
  }
}
