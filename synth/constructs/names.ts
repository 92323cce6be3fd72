/**
 * Names and labels of every resource, as named templates in _helpers.tpl.
 * Names derive from the release so two releases in one namespace never
 * collide; selectors use only app.kubernetes.io/name and instance, which never
 * change across upgrades (a selector is immutable).
 */
import type { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';

/** Go template condition: this release is not a canary (a canary renders only its pods and their config). */
export const NOT_CANARY = 'not .Values.canary.enabled';

export class ChartNames {
  constructor(private readonly helm: HelmChart) {
    const name = helm.chartName;
    helm.define(
      'name',
      `{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}`,
    );
    helm.define(
      'fullname',
      `
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}`,
    );
    // A component's name keeps its suffix even when the full name is long, so
    // "<long>-smtp" and "<long>-metrics" never truncate into the same name.
    helm.define(
      'componentName',
      `{{- printf "%s-%s" (include "${name}.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}`,
    );
    helm.define('chart', `{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}`);
    helm.define(
      'selectorLabels',
      `
app.kubernetes.io/name: {{ include "${name}.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}`,
    );
    // A canary's pods carry the stable release's instance (so its Services route to them) plus a track
    // label that keeps the canary Deployment's selector apart from the stable one's ReplicaSets.
    helm.define(
      'podSelectorLabels',
      `
{{- if .Values.canary.enabled }}
app.kubernetes.io/name: {{ include "${name}.name" . }}
app.kubernetes.io/instance: {{ required "canary.stableRelease must name the stable release when canary.enabled is true" .Values.canary.stableRelease }}
app.kubernetes.io/track: canary
{{- else }}
{{- include "${name}.selectorLabels" . }}
{{- end }}`,
    );
    // commonLabels may add labels to every object, never replace the chart's own: selectors depend on them.
    helm.define(
      'commonLabels',
      `
helm.sh/chart: {{ include "${name}.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "${name}.name" . }}
{{- with ${valueRef('commonLabels')} }}
{{ toYaml . }}
{{- end }}
{{- range $key, $_ := ${valueRef('commonLabels')} }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) }}
{{- fail (printf "commonLabels.%s cannot be set: the chart sets the app.kubernetes.io/* and helm.sh/* labels itself (add your own label names)" $key) }}
{{- end }}
{{- end }}`,
    );
    helm.define(
      'labels',
      `
{{ include "${name}.selectorLabels" . }}
{{ include "${name}.commonLabels" . }}`,
    );
    helm.define(
      'serviceAccountName',
      `
{{- if .Values.serviceAccount.create }}
{{- default (include "${name}.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}`,
    );
  }

  /** The release's resource name (`<release>-smtp-gateway`), as a string reference. */
  fullname(): string {
    return this.helm.tokens.str(this.helm.include('fullname'));
  }

  /** `<fullname>-<component>`, kept within 63 characters. */
  component(component: string): string {
    return this.helm.tokens.str(this.helm.include('componentName', `(dict "root" . "component" "${component}")`));
  }

  serviceAccountName(): string {
    return this.helm.tokens.str(this.helm.include('serviceAccountName'));
  }

  /** A labels map: every standard label, plus `extra` literal labels and an optional values map spliced in. */
  labels(extra: Record<string, string> = {}, valuesMap?: string): Record<string, string> {
    return this.map('labels', extra, valuesMap);
  }

  /** Labels without the selector labels: for resources a Service must never select (the test pod). */
  commonLabels(extra: Record<string, string> = {}): Record<string, string> {
    return this.map('commonLabels', extra);
  }

  /** Labels of the gateway pods (the stable release's selector labels on a canary). */
  podLabels(valuesMap: string): Record<string, string> {
    const t = this.helm.tokens;
    return {
      [t.splice(this.helm.include('podSelectorLabels'))]: '',
      [t.splice(this.helm.include('commonLabels'))]: '',
      [t.splice(valuesMap, { omitEmpty: true })]: '',
    };
  }

  /** The Deployment's selector over its own pods. */
  podSelector(): Record<string, string> {
    return this.map('podSelectorLabels', {});
  }

  /** The selector: name and instance only. */
  selectorLabels(): Record<string, string> {
    return this.map('selectorLabels', {});
  }

  private map(template: string, extra: Record<string, string>, valuesMap?: string): Record<string, string> {
    const map: Record<string, string> = { [this.helm.tokens.splice(this.helm.include(template))]: '', ...extra };
    if (valuesMap) map[this.helm.tokens.splice(valuesMap, { omitEmpty: true })] = '';
    return map;
  }
}
