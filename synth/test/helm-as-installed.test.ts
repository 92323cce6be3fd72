/**
 * The chart with the helm that scripts/install-tools.sh builds, used the way the
 * README tells users to: no --kube-version. Helm 4 takes the Kubernetes version it
 * assumes from the client-go in its build info; a helm that lost it would refuse
 * the chart's kubeVersion.
 */
import { describe, expect, it } from 'vitest';
import { toolVersions } from '../../scripts/test/helpers/tool-versions';
import { CHART, OVERLAYS, run } from './support';

describe('helm as installed by the tools script', () => {
  it('reports its pinned version', () => {
    const result = run('helm', ['version', '--template', '{{ .Version }}']);
    expect(result.stdout).toBe(toolVersions().HELM_VERSION);
  });

  it.each(Object.entries(OVERLAYS))('renders and lints the %s overlay with its default Kubernetes version', (_name, overlay) => {
    const template = run('helm', ['template', 'smtp-gateway', CHART, '--namespace', 'smtp-gateway', '--values', overlay]);
    expect(template.stderr).toBe('');
    expect(template.status).toBe(0);
    expect(template.stdout).toMatch(/^kind: Deployment$/m);
    const lint = run('helm', ['lint', '--strict', CHART, '--values', overlay]);
    expect(lint.status, lint.stdout + lint.stderr).toBe(0);
  });
});
