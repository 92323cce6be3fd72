/**
 * The gateway's Secret (upstream credentials, AUTH users), created from values
 * only when no existing Secret is named and something is to be read from it.
 * Production names an existing Secret so no secret value is ever in a values file.
 */
import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { SECRET_KEYS } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import type { ChartNames } from './names';

export interface GatewaySecretProps {
  readonly names: ChartNames;
}

/** Go template conditions shared by the Secret and the pod's volume. */
export const SECRET_CONDITIONS = {
  upstream: valueRef('secret.useUpstreamCredentials'),
  authUsers: valueRef('secret.useAuthUsers'),
  /** The pod mounts a Secret (its own or an existing one). */
  mounted: `(or ${valueRef('secret.useUpstreamCredentials')} ${valueRef('secret.useAuthUsers')})`,
};

export class GatewaySecret extends Construct {
  static readonly TEMPLATE = 'secret.yaml';

  constructor(scope: Construct, id: string, props: GatewaySecretProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    helm.define('secretName', `{{- default (include "${helm.chartName}.fullname" .) ${valueRef('secret.existingSecret')} }}`);
    const required = (path: string, condition: string, reason: string) =>
      t.str(`required "${path} must be set when ${reason} and secret.existingSecret is empty" ${valueRef(path)}`, { if: condition });
    const upstream = [SECRET_CONDITIONS.upstream, 'secret.useUpstreamCredentials is true'] as const;
    const secret = new kplus.Secret(this, 'secret', {
      metadata: { name: props.names.fullname(), labels: props.names.labels() },
      stringData: {
        [SECRET_KEYS.upstreamUsername]: required('secret.upstreamUsername', ...upstream),
        [SECRET_KEYS.upstreamPassword]: required('secret.upstreamPassword', ...upstream),
        [SECRET_KEYS.authUsers]: required('secret.authUsers', SECRET_CONDITIONS.authUsers, 'secret.useAuthUsers is true'),
      },
    });
    helm.template(ApiObject.of(secret), {
      file: GatewaySecret.TEMPLATE,
      if: `and (not ${valueRef('secret.existingSecret')}) ${SECRET_CONDITIONS.mounted}`,
    });
  }

  /** The name of the Secret the pod mounts: the existing one, or the chart's. */
  static nameRef(helm: HelmChart): string {
    return helm.tokens.str(helm.include('secretName'));
  }
}
