/**
 * What a chart page and a release carry: Chart.yaml metadata and Artifact Hub
 * annotations that agree with what the chart really runs and with
 * CHANGELOG.md, the Apache-2.0 LICENSE, and a README that covers install from
 * the OCI registry, upgrade and uninstall.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { changesOf } from '../changelog';
import { CHART, CI_VALUES, ROOT, render } from './support';

const chart = YAML.parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8'));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const annotation = (name: string) => YAML.parse(chart.annotations[`artifacthub.io/${name}`]);
const squash = (text: string) => text.replace(/`/g, '').replace(/\s+/g, ' ');

describe('Chart.yaml', () => {
  it('names home, sources, icon and maintainers', () => {
    expect(chart.home).toBe(pkg.homepage);
    expect(chart.sources).toEqual([pkg.homepage]);
    expect(chart.maintainers).toEqual([{ name: pkg.author.name, url: pkg.author.url }]);
    expect(chart.icon).toMatch(/^https:\/\/raw\.githubusercontent\.com\/.+\/main\/(.+\.svg)$/);
    const iconPath = /\/main\/(.+)$/.exec(chart.icon)![1];
    expect(existsSync(join(ROOT, iconPath)), iconPath).toBe(true);
  });

  it('declares the license the LICENSE file holds', () => {
    expect(chart.annotations['artifacthub.io/license']).toBe('Apache-2.0');
    expect(pkg.license).toBe('Apache-2.0');
    const license = readFileSync(join(ROOT, 'LICENSE'), 'utf8');
    expect(license).toBe(readFileSync(join(ROOT, 'node_modules', 'typescript', 'LICENSE.txt'), 'utf8'));
    expect(license).toMatch(/^Apache License\s+Version 2\.0, January 2004/);
    expect(readFileSync(join(CHART, 'LICENSE'), 'utf8')).toBe(license);
  });

  it('lists exactly the images a default install runs', () => {
    const docs = render({ values: [CI_VALUES.default] });
    const containers = docs.flatMap((d) => (d.kind === 'Pod' ? d.spec.containers : d.spec?.template?.spec?.containers ?? []));
    const images = (annotation('images') as Array<{ image: string }>).map((i) => i.image).sort();
    expect(images).toEqual([...new Set(containers.map((c: { image: string }) => c.image))].sort());
  });

  it("lists the changes of this version as CHANGELOG.md records them, and every one of them", () => {
    const changelog = readFileSync(join(ROOT, 'CHANGELOG.md'), 'utf8');
    const section = changelog.split(/^## /m).find((s) => s.startsWith(`[${chart.version}]`));
    expect(section, `CHANGELOG.md has a section for ${chart.version}`).toBeDefined();
    const changes = annotation('changes') as Array<{ kind: string; description: string }>;
    const items = section!.split(/^- /m).slice(1);
    expect(changes).toHaveLength(items.length);
    for (const change of changes) {
      expect(['added', 'changed', 'deprecated', 'removed', 'fixed', 'security']).toContain(change.kind);
      expect(squash(section!), change.description).toContain(squash(change.description));
    }
  });

  it('fails synth with the version named when the changelog has no section for it', () => {
    expect(() => changesOf('9.9.9')).toThrow('CHANGELOG.md has no "## [9.9.9]" section for the chart version 9.9.9');
    expect(() => changesOf('1.0.0', '## [1.0.0]\n### Improved\n- x\n')).toThrow('"### Improved" is not a Keep a Changelog section');
  });
});

describe('the chart README', () => {
  const readme = readFileSync(join(CHART, 'README.md'), 'utf8');

  it('covers prerequisites, install from the OCI registry, upgrade and uninstall', () => {
    for (const heading of ['## Prerequisites', '## Install', '## Upgrade', '## Uninstall', '## Values']) expect(readme).toContain(`\n${heading}\n`);
    expect(readme).toContain(`oci://$REGISTRY/charts/smtp-gateway --version ${chart.version}`);
    expect(readme).toContain('helm uninstall smtp-gateway');
    for (const prerequisite of ['AWS Load Balancer Controller', 'cert-manager', 'Prometheus Operator']) expect(readme).toContain(prerequisite);
  });
});
