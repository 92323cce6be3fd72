/**
 * `extraDeploy`: objects the user releases with the chart (a SecretProviderClass,
 * an ExternalSecret, a cert-manager Certificate), each through `tpl` so it can
 * name the release or read values. Rendered as given: the chart adds nothing.
 */
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';

export class ExtraDeploy extends Construct {
  static readonly TEMPLATE = 'extra-deploy.yaml';

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmChart.of(this);
    helm.rawTemplate(
      ExtraDeploy.TEMPLATE,
      `{{- range $i, $object := ${valueRef('extraDeploy')} }}
---
{{- if typeIs "string" $object }}
{{ tpl $object $ }}
{{- else }}
{{ tpl (toYaml $object) $ }}
{{- end }}
{{- end }}
`,
    );
  }
}
