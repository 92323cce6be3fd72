/**
 * The gateway's config.yaml in a ConfigMap: `.Values.config` with the keys a
 * pod needs set by the chart (listen on all addresses, the container ports,
 * the paths where Secrets are mounted) merged over it; values that set one of
 * those keys fail the render.
 */
import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { CONFIG_FILE_NAME } from '../../gateway/src/config/constants';
import { goLiteral } from '../helm/go-literal';
import { HelmChart } from '../helm/helm-chart';
import { CHART_OWNED_CONFIG, MOUNTED_CONFIG, POD_CONFIG } from '../values/chart-owned-config';
import { valueRef } from '../values/ref';
import { SECRET_CONDITIONS } from './gateway-secret';
import type { ChartNames } from './names';

/** Set when the matching Secret is mounted: the condition and the config keys. */
const WHEN_MOUNTED: Array<{ condition: string; config: Record<string, Record<string, string>> }> = [
  { condition: valueRef('tls.existingSecret'), config: MOUNTED_CONFIG.tls },
  { condition: SECRET_CONDITIONS.upstream, config: MOUNTED_CONFIG.upstream },
  { condition: SECRET_CONDITIONS.authUsers, config: MOUNTED_CONFIG.authUsers },
];

/**
 * The gateway would accept this config and then refuse every connection the NLB makes: it takes a
 * PROXY header only from a trusted network, and the NLB sends one on every connection.
 */
const PROXY_NEEDS_TRUSTED_NETWORKS = `{{- if and .Values.config.proxyProtocol.enabled (not .Values.config.proxyProtocol.trustedNetworks) }}
{{- fail "config.proxyProtocol.trustedNetworks must list the load balancers' networks (e.g. the VPC CIDR) when config.proxyProtocol.enabled is true: the gateway refuses a PROXY header from any other peer" }}
{{- end }}`;

/** Fails the render when a values file sets a key the chart owns, naming the value to use instead. */
function refuseChartOwnedKeys(): string {
  return Object.entries(CHART_OWNED_CONFIG)
    .map(([path, hint]) => {
      const parts = path.split('.');
      const key = JSON.stringify(parts[parts.length - 1]);
      const parent = parts.length === 1 ? '.Values.config' : `(dig ${parts.slice(0, -1).map((p) => JSON.stringify(p)).join(' ')} (dict) .Values.config)`;
      const message = JSON.stringify(`config.${path} is set by the chart, not by values (got %s): ${hint}`);
      return `{{- if hasKey ${parent} ${key} }}\n{{- fail (printf ${message} (toJson (index ${parent} ${key}))) }}\n{{- end }}`;
    })
    .join('\n');
}

/**
 * The kubelet evicts a pod whose emptyDir outgrows its sizeLimit: the gateway's own cap on the spool
 * (a 452 to the client) must come first. spool.sizeLimit is Ki, Mi or Gi (values schema).
 */
const SPOOL_FITS_VOLUME = `{{- $limit := toString .Values.spool.sizeLimit }}
{{- $number := regexFind "^[0-9]+" $limit }}
{{- $bytes := mul (int64 $number) (get (dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824) (trimPrefix $number $limit)) }}
{{- $maxBytes := int64 .Values.config.spool.maxBytes }}
{{- if ge $maxBytes $bytes }}
{{- fail (printf "config.spool.maxBytes (%d) must be less than spool.sizeLimit (%s, %d bytes): the kubelet evicts a pod whose spool volume outgrows its sizeLimit" $maxBytes $limit $bytes) }}
{{- end }}`;

export interface GatewayConfigProps {
  readonly names: ChartNames;
}

export class GatewayConfig extends Construct {
  /** The ConfigMap, for mounting. */
  readonly configMap: kplus.ConfigMap;
  /** Key of the config file inside the ConfigMap. */
  readonly fileName = CONFIG_FILE_NAME;
  /** The template file, for the pods' checksum annotation. */
  static readonly TEMPLATE = 'configmap.yaml';

  constructor(scope: Construct, id: string, props: GatewayConfigProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const merges = WHEN_MOUNTED.map(
      ({ condition, config }) => `{{- if ${condition} }}\n{{- $_ := mustMergeOverwrite $config ${goLiteral(config)} }}\n{{- end }}`,
    );
    helm.define(
      'config',
      [refuseChartOwnedKeys(), PROXY_NEEDS_TRUSTED_NETWORKS, SPOOL_FITS_VOLUME, `{{- $config := mustMergeOverwrite (deepCopy (default (dict) .Values.config)) ${goLiteral(POD_CONFIG)} }}`, ...merges, '{{- toYaml $config }}'].join('\n'),
    );
    this.configMap = new kplus.ConfigMap(this, 'configmap', {
      metadata: { name: props.names.fullname(), labels: props.names.labels() },
      data: { [CONFIG_FILE_NAME]: helm.tokens.text(helm.include('config')) },
    });
    helm.template(ApiObject.of(this.configMap), { file: GatewayConfig.TEMPLATE });
  }
}
