/**
 * The chart as a dependency of an umbrella chart: Helm injects `global` into
 * its values (which the strict schema must accept), global.imageRegistry is
 * honoured, and the dependency resolves offline from file://.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { CHART, ROOT, run, tempDir } from './support';

const FIXTURE = join(ROOT, 'synth', 'test', 'fixtures', 'umbrella');

describe('smtp-gateway as a subchart', () => {
  let umbrella: string;

  beforeAll(() => {
    umbrella = join(tempDir('umbrella'), 'mail-platform');
    cpSync(FIXTURE, umbrella, { recursive: true });
    const chart = YAML.parse(readFileSync(join(umbrella, 'Chart.yaml'), 'utf8'));
    chart.dependencies[0].repository = `file://${CHART}`;
    writeFileSync(join(umbrella, 'Chart.yaml'), YAML.stringify(chart));
    for (const step of ['update', 'build']) {
      const result = run('helm', ['dependency', step, '--skip-refresh', umbrella]);
      expect(result.stderr + result.stdout, `helm dependency ${step}`).not.toMatch(/Error/);
      expect(result.status, `helm dependency ${step}`).toBe(0);
    }
  });

  it('resolves offline from file:// and passes helm lint --strict', () => {
    expect(run('helm', ['dependency', 'list', umbrella]).stdout).toMatch(/smtp-gateway\s+>=0\.0\.0-0\s+file:\/\/\S+\s+ok/);
    const lint = run('helm', ['lint', '--strict', umbrella, '--kube-version', '1.28.0']);
    expect(lint.stdout + lint.stderr).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(lint.status).toBe(0);
  });

  it('renders with the umbrella globals, global.imageRegistry in every image', () => {
    const result = run('helm', ['template', 'mail', umbrella, '--namespace', 'apps', '--kube-version', '1.28.0']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const docs = YAML.parseAllDocuments(result.stdout).map((d) => d.toJS()).filter(Boolean);
    const deployment = docs.find((d) => d.kind === 'Deployment');
    expect(deployment.metadata.name).toBe('mail-relay');
    expect(deployment.spec.template.spec.containers[0].image).toBe('registry.platform.example/example/smtp-gateway:0.1.0');
    const testPod = docs.find((d) => d.kind === 'Pod');
    expect(testPod.spec.containers[0].image).toBe('registry.platform.example/busybox:1.36.1');
    const config = YAML.parse(docs.find((d) => d.kind === 'ConfigMap').data['config.yaml']);
    expect(config.upstream.host).toBe('email-smtp.us-east-1.amazonaws.com');
  });

  it('accepts --set global.x=1 and still refuses a misspelled key of the subchart', () => {
    expect(run('helm', ['template', 'mail', umbrella, '--set', 'global.x=1']).status).toBe(0);
    const typo = run('helm', ['template', 'mail', umbrella, '--set', 'relay.replicaCout=2']);
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toContain("additional properties 'replicaCout' not allowed");
  });
});
