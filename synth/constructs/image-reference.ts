/**
 * Image references, with `global.imageRegistry` (set by an umbrella chart or a
 * platform team's mirror) in place of the repository's own registry.
 */
import type { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';

export interface ImageReferenceProps {
  /** Expression of the repository, e.g. `.Values.image.repository`. */
  readonly repository: string;
  /** Expression of the tag. */
  readonly tag: string;
  /** Expression of a digest that pins the image when not empty. */
  readonly digest?: string;
}

/**
 * Defines `<chart>.imageReference` once and returns the expression of one image: `registry/path:tag` or
 * `registry/path@digest`. A repository's first component is its registry when it has a dot or a colon or is
 * localhost (Docker's rule); global.imageRegistry replaces it, or is put in front when there is none.
 */
export function imageReference(helm: HelmChart, props: ImageReferenceProps): string {
  helm.define(
    'imageReference',
    `{{- $repository := .repository }}
{{- with .registry }}
{{- $parts := splitn "/" 2 $repository }}
{{- if and $parts._1 (regexMatch "[.:]|^localhost$" $parts._0) }}
{{- $repository = $parts._1 }}
{{- end }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .digest }}
{{- printf "%s@%s" $repository .digest }}
{{- else }}
{{- printf "%s:%s" $repository .tag }}
{{- end }}`,
  );
  const digest = props.digest ?? '""';
  return helm.include('imageReference', `(dict "repository" ${props.repository} "tag" ${props.tag} "digest" ${digest} "registry" ${valueRef('global.imageRegistry')})`);
}
