/**
 * The gateway's config.yaml in a ConfigMap: `.Values.config` with the keys a
 * pod needs set by the chart (listen on all addresses, the container ports,
 * the paths where Secrets are mounted) merged over it.
 */
import { posix } from 'node:path';
import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { CONFIG_FILE_NAME, CONTAINER_PORTS, MOUNT_PATHS, SECRET_KEYS } from '../../gateway/src/config/constants';
import { goLiteral } from '../helm/go-literal';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { SECRET_CONDITIONS } from './gateway-secret';
import type { ChartNames } from './names';

/** Set in every pod: the Services and probes reach these addresses and ports. */
const ALWAYS = {
  listenAddress: '0.0.0.0',
  listeners: {
    relay: { port: CONTAINER_PORTS.relay },
    submission: { port: CONTAINER_PORTS.submission },
    smtps: { port: CONTAINER_PORTS.smtps },
  },
  ops: { listenAddress: '0.0.0.0', port: CONTAINER_PORTS.ops },
  // The root filesystem is read-only; only /tmp and the spool volume are writable.
  devUpstream: { dir: posix.join(MOUNT_PATHS.tmpDir, 'dev-mail') },
  spool: { dir: MOUNT_PATHS.spoolDir },
};

/** Set when the matching Secret is mounted: the condition, why (for the docs) and the config keys. */
const WHEN_MOUNTED: Array<{ condition: string; reason: string; config: Record<string, Record<string, string>> }> = [
  {
    condition: valueRef('tls.existingSecret'),
    reason: 'tls.existingSecret is set',
    config: { tls: { certFile: posix.join(MOUNT_PATHS.tlsDir, 'tls.crt'), keyFile: posix.join(MOUNT_PATHS.tlsDir, 'tls.key') } },
  },
  {
    condition: SECRET_CONDITIONS.upstream,
    reason: 'secret.useUpstreamCredentials is true',
    config: {
      upstream: {
        usernameFile: posix.join(MOUNT_PATHS.secretsDir, SECRET_KEYS.upstreamUsername),
        passwordFile: posix.join(MOUNT_PATHS.secretsDir, SECRET_KEYS.upstreamPassword),
      },
    },
  },
  {
    condition: SECRET_CONDITIONS.authUsers,
    reason: 'secret.useAuthUsers is true',
    config: { auth: { usersFile: posix.join(MOUNT_PATHS.secretsDir, SECRET_KEYS.authUsers) } },
  },
];

/**
 * The gateway would accept this config and then refuse every connection the NLB makes: it takes a
 * PROXY header only from a trusted network, and the NLB sends one on every connection.
 */
const PROXY_NEEDS_TRUSTED_NETWORKS = `{{- if and .Values.config.proxyProtocol.enabled (not .Values.config.proxyProtocol.trustedNetworks) }}
{{- fail "config.proxyProtocol.trustedNetworks must list the load balancers' networks (e.g. the VPC CIDR) when config.proxyProtocol.enabled is true: the gateway refuses a PROXY header from any other peer" }}
{{- end }}`;

/** values.yaml / README notes for the config keys the chart sets, by dotted path. */
export function chartSetConfigNotes(): Record<string, string> {
  const notes: Record<string, string> = {};
  const visit = (node: unknown, path: string, note: (value: unknown) => string) => {
    if (node !== null && typeof node === 'object') {
      for (const [key, child] of Object.entries(node)) visit(child, `${path}.${key}`, note);
    } else {
      notes[path] = note(node);
    }
  };
  visit(ALWAYS, 'config', (value) => `In the pod the chart sets ${JSON.stringify(value)}.`);
  for (const { reason, config } of WHEN_MOUNTED) {
    visit(config, 'config', (value) => `The chart sets ${JSON.stringify(value)} when ${reason}.`);
  }
  return notes;
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
      [PROXY_NEEDS_TRUSTED_NETWORKS, SPOOL_FITS_VOLUME, `{{- $config := mustMergeOverwrite (deepCopy (default (dict) .Values.config)) ${goLiteral(ALWAYS)} }}`, ...merges, '{{- toYaml $config }}'].join('\n'),
    );
    this.configMap = new kplus.ConfigMap(this, 'configmap', {
      metadata: { name: props.names.fullname(), labels: props.names.labels() },
      data: { [CONFIG_FILE_NAME]: helm.tokens.text(helm.include('config')) },
    });
    helm.template(ApiObject.of(this.configMap), { file: GatewayConfig.TEMPLATE });
  }
}
