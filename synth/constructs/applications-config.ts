/**
 * The applications file (per-application policy): from an existing Secret or
 * ConfigMap, or written by the chart from `applications.inline` into its own
 * ConfigMap. The workload mounts whichever is set; the gateway reloads the
 * file when it changes, so no checksum rolls the pods.
 */
import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { APPLICATIONS_FILE_NAME } from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import type { ChartNames } from './names';

export interface ApplicationsConfigProps {
  readonly names: ChartNames;
}

const SOURCES = ['applications.existingSecret', 'applications.existingConfigMap', 'applications.inline'];

/** Go template conditions shared by the ConfigMap, the pod's volume and the config. */
export const APPLICATIONS_CONDITIONS = {
  secret: valueRef('applications.existingSecret'),
  /** A ConfigMap holds the file: an existing one or the chart's. */
  configMap: `(or ${valueRef('applications.existingConfigMap')} ${valueRef('applications.inline')})`,
  inline: valueRef('applications.inline'),
  mounted: `(or ${SOURCES.map(valueRef).join(' ')})`,
};

/** Two sources would leave which file the gateway reads to the template's order; refuse with none would refuse everyone. */
export const ONE_APPLICATIONS_SOURCE = `{{- $applicationSources := list }}
${SOURCES.map((path) => `{{- if ${valueRef(path)} }}{{- $applicationSources = append $applicationSources "${path}" }}{{- end }}`).join('\n')}
{{- if gt (len $applicationSources) 1 }}
{{- fail (printf "set at most one of applications.existingSecret, applications.existingConfigMap and applications.inline (got %s)" (join ", " $applicationSources)) }}
{{- end }}
{{- if and (eq (dig "applications" "unmatched" "global" (default (dict) .Values.config)) "refuse") (not $applicationSources) }}
{{- fail "config.applications.unmatched is refuse, so set applications.existingSecret, applications.existingConfigMap or applications.inline: without applications every client would be refused" }}
{{- end }}`;

export class ApplicationsConfig extends Construct {
  static readonly TEMPLATE = 'applications-configmap.yaml';

  constructor(scope: Construct, id: string, props: ApplicationsConfigProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const configMap = new ApiObject(this, 'configmap', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: props.names.component('applications'), labels: props.names.labels({ 'app.kubernetes.io/component': 'applications' }) },
      data: { [APPLICATIONS_FILE_NAME]: t.text(`dict "applications" ${valueRef('applications.inline')} | toYaml`) },
    });
    helm.template(configMap, { file: ApplicationsConfig.TEMPLATE, if: APPLICATIONS_CONDITIONS.inline });
  }

  /** The name of the ConfigMap the pod mounts: the existing one, or the chart's. */
  static configMapRef(helm: HelmChart): string {
    const own = helm.include('componentName', '(dict "root" . "component" "applications")');
    return helm.tokens.str(`default (${own}) ${valueRef('applications.existingConfigMap')}`);
  }
}
