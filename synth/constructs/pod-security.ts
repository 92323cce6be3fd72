/**
 * The container securityContext of the restricted Pod Security Standard, in one
 * place for every pod the chart runs (the gateway and the helm test), so the
 * policy cannot drift between them; and the user's additions over it.
 */
import * as kplus from 'cdk8s-plus-28';
import { goLiteral } from '../helm/go-literal';
import type { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';

/** Non-root as `user`/`group`, read-only root, no privilege escalation, no capabilities, seccomp RuntimeDefault. */
export function restrictedContainerSecurity(user: number, group: number): kplus.ContainerSecurityContextProps {
  return {
    ensureNonRoot: true,
    user,
    group,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: [kplus.Capability.ALL] },
    seccompProfile: { type: kplus.SeccompProfileType.RUNTIME_DEFAULT },
  };
}

/**
 * Template expressions of a synthesised securityContext with a values map set over it: every key given
 * replaces the default, maps merge key by key, keys not given keep the restricted default. (sprig's
 * mergeOverwrite would skip false and 0, so `runAsNonRoot: false` would be silently ignored.)
 * Construct it in a constructor: its named template must exist before _helpers.tpl is written.
 */
export class SecurityContextOverValues {
  constructor(private readonly helm: HelmChart) {
    helm.define(
      'setOver',
      `{{- $out := deepCopy .base }}
{{- range $key, $value := .over }}
{{- if and (kindIs "map" $value) (kindIs "map" (index $out $key)) }}
{{- $_ := set $out $key (include "${helm.chartName}.setOver" (dict "base" (index $out $key) "over" $value) | fromYaml) }}
{{- else }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toYaml $out }}`,
    );
  }

  /** `base` with the map at `valuesPath` set over it. */
  expr(base: unknown, valuesPath: string): string {
    return `(${this.helm.include('setOver', `(dict "base" ${goLiteral(base)} "over" ${valueRef(valuesPath)})`)} | fromYaml)`;
  }
}
