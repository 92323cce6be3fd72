/**
 * `commonAnnotations` on every object the chart renders. An annotation the
 * object sets itself (a Helm hook, the NLB settings) keeps the chart's value,
 * so the rendered YAML never holds one key twice.
 */
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';

export class CommonAnnotations extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmChart.of(this);
    helm.transform(undefined, (manifest) => {
      const metadata = (manifest.metadata ??= {}) as Record<string, unknown>;
      const own = (metadata.annotations ?? {}) as Record<string, unknown>;
      const literalKeys = Object.keys(own).filter((key) => !helm.tokens.whole(key));
      const expr = literalKeys.length ? `omit ${valueRef('commonAnnotations')} ${literalKeys.map((k) => JSON.stringify(k)).join(' ')}` : valueRef('commonAnnotations');
      metadata.annotations = { ...own, [helm.tokens.splice(expr, { omitEmpty: true })]: '' };
    });
  }
}
