/** The pods' ServiceAccount, with annotations for an IAM role (IRSA); its token is never mounted. */
import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import type { ChartNames } from './names';

export interface GatewayServiceAccountProps {
  readonly names: ChartNames;
}

export class GatewayServiceAccount extends Construct {
  constructor(scope: Construct, id: string, props: GatewayServiceAccountProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const account = new kplus.ServiceAccount(this, 'serviceaccount', {
      metadata: {
        name: props.names.serviceAccountName(),
        labels: props.names.labels(),
        annotations: { [helm.tokens.splice(valueRef('serviceAccount.annotations'), { omitEmpty: true })]: '' },
      },
      automountToken: false,
    });
    helm.template(ApiObject.of(account), { file: 'serviceaccount.yaml', if: valueRef('serviceAccount.create') });
  }
}
