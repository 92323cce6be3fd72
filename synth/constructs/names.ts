/**
 * Names and labels of every resource, as named templates in _helpers.tpl.
 * Names derive from the release so two releases in one namespace never
 * collide. Two selectors:
 * - a release's own pods (Deployment, PDB, topology spread, and so the HPA):
 *   app.kubernetes.io/name and instance, which never change across upgrades (a
 *   Deployment's selector is immutable);
 * - the pods a stable release's Services route to (Services, NetworkPolicy):
 *   name and STABLE_RELEASE_LABEL, which a canary's pods carry with the stable
 *   release's name. A canary's pods keep their own instance, so the stable
 *   release's HPA and PDB never count them.
 */
import type { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';

/** Go template condition: this release is not a canary (a canary renders only its pods and their config). */
export const NOT_CANARY = 'not .Values.canary.enabled';

/** Go template condition: the release has an HPA (a canary never does; the deploy script sizes it). */
export const HPA_ENABLED = `and (${NOT_CANARY}) ${valueRef('autoscaling.enabled')}`;

/** The pod label naming the stable release whose Services route to the pod (its own name, or canary.stableRelease). */
export const STABLE_RELEASE_LABEL = 'smtp-gateway/stable-release';

/** The pod label marking a canary's pods, for people and kubectl (no selector uses it). */
export const TRACK_LABEL = 'app.kubernetes.io/track';

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
    helm.define(
      'stableRelease',
      `
{{- if .Values.canary.enabled }}
{{- $stable := required "canary.stableRelease must name the stable release when canary.enabled is true" .Values.canary.stableRelease }}
{{- if eq $stable .Release.Name }}
{{- fail (printf "canary.stableRelease must name another release than the canary itself, got %q" $stable) }}
{{- end }}
{{- $stable }}
{{- else }}
{{- .Release.Name }}
{{- end }}`,
    );
    // The release's Deployment as it is in the cluster before this install or upgrade, as JSON ("{}" on a
    // first install and under helm template, where lookup finds nothing).
    helm.define('liveDeployment', `{{- lookup "apps/v1" "Deployment" .Release.Namespace (include "${name}.fullname" .) | toJson }}`);
    helm.define(
      'podLabels',
      `
{{ include "${name}.selectorLabels" . }}
${STABLE_RELEASE_LABEL}: {{ include "${name}.stableRelease" . }}
{{- if .Values.canary.enabled }}
${TRACK_LABEL}: canary
{{- end }}`,
    );
    // Services select by STABLE_RELEASE_LABEL only once every pod of the release carries it. Pods made by a
    // chart from before that label lack it, and helm changes Services before the Deployment rolls, so
    // switching at once would leave the Services without endpoints (and the NLB without targets) until new
    // pods are Ready: the upgrade that adds the label keeps selecting by instance, the next one switches.
    helm.define(
      'serviceSelectorLabels',
      `
{{- $live := include "${name}.liveDeployment" . | fromJson }}
{{- if and $live (not (hasKey (dig "spec" "template" "metadata" "labels" (dict) $live) "${STABLE_RELEASE_LABEL}")) }}
{{- include "${name}.selectorLabels" . }}
{{- else }}
app.kubernetes.io/name: {{ include "${name}.name" . }}
${STABLE_RELEASE_LABEL}: {{ .Release.Name }}
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

  /** Labels of the gateway pods: their own release's selector labels, the stable release they serve, a canary's track. */
  podLabels(valuesMap: string): Record<string, string> {
    const t = this.helm.tokens;
    return {
      [t.splice(this.helm.include('podLabels'))]: '',
      [t.splice(this.helm.include('commonLabels'))]: '',
      [t.splice(valuesMap, { omitEmpty: true })]: '',
    };
  }

  /** The release's own pods: name and instance only (Deployment, PDB, topology spread). */
  selectorLabels(): Record<string, string> {
    return this.map('selectorLabels', {});
  }

  /** The pods a stable release's Services route to: its own and its canary's. */
  serviceSelectorLabels(): Record<string, string> {
    return this.map('serviceSelectorLabels', {});
  }

  private map(template: string, extra: Record<string, string>, valuesMap?: string): Record<string, string> {
    const map: Record<string, string> = { [this.helm.tokens.splice(this.helm.include(template))]: '', ...extra };
    if (valuesMap) map[this.helm.tokens.splice(valuesMap, { omitEmpty: true })] = '';
    return map;
  }
}
