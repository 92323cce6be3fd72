/**
 * The chart as helm renders it, for each ci/*-values.yaml and overlay: strict
 * validation against the Kubernetes schemas of the chart's kubeVersion floor and
 * of the version the EKS clusters run (and the ServiceMonitor and PrometheusRule CRDs), helm lint --strict, the
 * invariants every release must keep, and clear failures for bad overlays.
 */
import { posix } from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { MOUNT_PATHS } from '../../gateway/src/config/constants';
import { configSchema } from '../../gateway/src/config/schema';
import { CHART, CI_VALUES, KUBERNETES, OVERLAYS, helmTemplate, kubeconform, render, run, valuesFile } from './support';

const CASES = {
  ...Object.fromEntries(Object.entries(CI_VALUES).map(([name, file]) => [name, [file]])),
  staging: [OVERLAYS.staging],
  prod: [OVERLAYS.prod],
};

describe.each(Object.entries(CASES))('the %s rendering', (_name, values) => {
  it('passes helm lint --strict', () => {
    const result = run('helm', ['lint', '--strict', CHART, '--kube-version', '1.28.0', ...values.flatMap((v) => ['--values', v])]);
    expect(result.stderr + result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(result.status).toBe(0);
  });

  it.each([KUBERNETES.floor, KUBERNETES.cluster])('is valid against the Kubernetes %s and ServiceMonitor schemas in strict mode', (kubeVersion) => {
    const rendered = helmTemplate({ values, withPrometheusOperator: true, kubeVersion });
    expect(rendered.stderr).toBe('');
    const result = kubeconform(rendered.stdout, kubeVersion);
    expect(result.stdout).toMatch(/Invalid: 0, Errors: 0, Skipped: 0/);
    expect(result.status).toBe(0);
  });

  it('selects its own pods by name and instance, routes by name and stable release, and names every resource after the release', () => {
    const own = { 'app.kubernetes.io/name': 'smtp-gateway', 'app.kubernetes.io/instance': 'mail' };
    const serving = { 'app.kubernetes.io/name': 'smtp-gateway', 'smtp-gateway/stable-release': 'mail' };
    for (const doc of render({ values, release: 'mail', namespace: 'apps', withPrometheusOperator: true })) {
      expect(doc.metadata.name, `${doc.kind} name`).toMatch(/^mail-smtp-gateway(-[a-z]+)?$/);
      expect(doc.metadata.labels['app.kubernetes.io/instance'], `${doc.kind} instance label`).toBe('mail');
      const selector = doc.spec?.selector?.matchLabels ?? doc.spec?.podSelector?.matchLabels ?? (doc.kind === 'Service' ? doc.spec.selector : undefined);
      if (selector && doc.kind !== 'ServiceMonitor') {
        const routes = doc.kind === 'Service' || doc.kind === 'NetworkPolicy';
        expect(selector, `${doc.kind} selector`).toEqual(routes ? serving : own);
      }
    }
  });

  it("writes a config.yaml the gateway's own schema accepts, whose files are all mounted", () => {
    const all = [...values, valuesFile({ tls: { existingSecret: 't' }, secret: { existingSecret: 's', useUpstreamCredentials: true, useAuthUsers: true } })];
    for (const files of [values, all]) {
      const docs = render({ values: files });
      const config = configSchema.parse(YAML.parse(docs.find((d) => d.kind === 'ConfigMap')!.data['config.yaml']));
      expect(config.listenAddress).toBe('0.0.0.0');
      const volume = docs.find((d) => d.kind === 'Deployment')!.spec.template.spec.volumes.find((v: any) => v.name === 'config');
      const mounted = volume.projected.sources.flatMap((s: any) => (s.configMap ?? s.secret).items.map((i: any) => posix.join(MOUNT_PATHS.configDir, i.path)));
      const referenced = [config.tls.certFile, config.tls.keyFile, config.upstream.usernameFile, config.upstream.passwordFile, config.auth.usersFile].filter(Boolean);
      for (const file of referenced) expect(mounted).toContain(file);
    }
  });

  it('lets two releases live in one namespace', () => {
    const names = (release: string) => new Set(render({ values, release, withPrometheusOperator: true }).map((d) => `${d.kind}/${d.metadata.name}`));
    const a = names('blue');
    const b = names('green');
    expect([...a].filter((n) => b.has(n))).toEqual([]);
  });
});

describe('the overlays size staging and production as planned', () => {
  const kinds = (docs: Array<Record<string, any>>) => docs.map((d) => d.kind).sort();

  it('staging: one replica, no HPA, PDB or ServiceMonitor, 100m-500m CPU and 128Mi-512Mi memory', () => {
    const docs = render({ values: [OVERLAYS.staging], withPrometheusOperator: true });
    expect(kinds(docs)).not.toContain('HorizontalPodAutoscaler');
    expect(kinds(docs)).not.toContain('PodDisruptionBudget');
    expect(kinds(docs)).not.toContain('ServiceMonitor');
    const deployment = docs.find((d) => d.kind === 'Deployment')!;
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.template.spec.containers[0].resources).toEqual({ requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '500m', memory: '512Mi' } });
  });

  it('production: HPA 2-4, a PDB, the ServiceMonitor, 500m-1000m CPU and 512Mi-1Gi memory, both zones', () => {
    const docs = render({ values: [OVERLAYS.prod], withPrometheusOperator: true });
    const hpa = docs.find((d) => d.kind === 'HorizontalPodAutoscaler')!;
    expect([hpa.spec.minReplicas, hpa.spec.maxReplicas]).toEqual([2, 4]);
    expect(kinds(docs)).toContain('PodDisruptionBudget');
    expect(kinds(docs)).toContain('ServiceMonitor');
    const deployment = docs.find((d) => d.kind === 'Deployment')!;
    expect(deployment.spec.replicas, 'a first install starts at the HPA minimum').toBe(2);
    expect(deployment.spec.template.spec.containers[0].resources).toEqual({ requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '1000m', memory: '1Gi' } });
    expect(deployment.spec.template.spec.topologySpreadConstraints[0]).toMatchObject({ topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule' });
  });

  it('production holds no secret value, only the name of an existing Secret', () => {
    const docs = render({ values: [OVERLAYS.prod] });
    expect(docs.find((d) => d.kind === 'Secret')).toBeUndefined();
    const overlay = YAML.parse(require('node:fs').readFileSync(OVERLAYS.prod, 'utf8'));
    expect(overlay.secret).toEqual({ existingSecret: expect.any(String), useUpstreamCredentials: true, useAuthUsers: true });
  });

  it('the pod can be terminated only after preStop, drain delay and grace have all run', () => {
    for (const overlay of [OVERLAYS.staging, OVERLAYS.prod]) {
      const docs = render({ values: [overlay] });
      const pod = docs.find((d) => d.kind === 'Deployment')!.spec.template.spec;
      const config = YAML.parse(docs.find((d) => d.kind === 'ConfigMap')!.data['config.yaml']);
      const preStop = Number(pod.containers[0].lifecycle.preStop.exec.command[1]);
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStop + config.drain.delaySeconds + config.drain.graceSeconds);
    }
  });
});

describe('validation catches mistakes', () => {
  it('without an upstream host the chart does not render (the gateway would not start), naming the key', () => {
    const result = helmTemplate();
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("at '/config/upstream/host': minLength: got 0, want 1");
    expect(helmTemplate({ set: ['config.devUpstream.enabled=true'] }).status).toBe(0);
  });

  it('a misspelled overlay key fails with the schema message naming it', () => {
    const result = helmTemplate({ values: [OVERLAYS.prod, valuesFile({ autoscaling: { maxReplica: 6 } })] });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/autoscaling.*additional properties 'maxReplica' not allowed/s);
  });

  it('a value of the wrong type fails with the key and the expected type', () => {
    const result = helmTemplate({ values: [valuesFile({ config: { upstream: { port: '587' } } })] });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/\/config\/upstream\/port.*got string, want integer/s);
  });

  it('kubeconform is strict: a misspelled field in a manifest is an error', () => {
    const manifest = helmTemplate({ values: [CI_VALUES.default] }).stdout.replace('restartPolicy: Always', 'restartPolicy: Always\n      restartPolicyy: Always');
    const result = kubeconform(manifest);
    expect(result.status).not.toBe(0);
    expect(result.stdout).toContain("additionalProperties 'restartPolicyy' not allowed");
  });

  it('kubeconform checks the ServiceMonitor against its CRD', () => {
    const manifest = helmTemplate({ values: [OVERLAYS.prod], withPrometheusOperator: true }).stdout.replace('scrapeTimeout:', 'scrapeTimeOut:');
    const result = kubeconform(manifest);
    expect(result.status).not.toBe(0);
    expect(result.stdout).toMatch(/ServiceMonitor.*scrapeTimeOut/);
  });

  it('kubeconform checks the PrometheusRule against its CRD', () => {
    const rendered = helmTemplate({ values: [CI_VALUES['everything-on']], withPrometheusOperator: true }).stdout;
    expect(rendered).toContain('kind: PrometheusRule');
    expect(kubeconform(rendered).status).toBe(0);
    const result = kubeconform(rendered.replace(/^(\s+)expr:/m, '$1expression:'));
    expect(result.status).not.toBe(0);
    expect(result.stdout).toMatch(/PrometheusRule smtp-gateway is invalid.*expr/);
  });

  it('a canary renders only valid manifests: its pods, their config and account', () => {
    const rendered = helmTemplate({ release: 'smtp-gateway-canary', values: [OVERLAYS.prod], set: ['canary.enabled=true', 'canary.stableRelease=smtp-gateway'], withPrometheusOperator: true });
    expect(kubeconform(rendered.stdout).status).toBe(0);
    const docs = YAML.parseAllDocuments(rendered.stdout).map((d) => d.toJS()).filter(Boolean);
    expect(docs.map((d) => d.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'ServiceAccount']);
  });

  it('a config key the chart owns fails with the value to use instead', () => {
    const result = helmTemplate({ values: [CI_VALUES.default], set: ['config.listeners.relay.port=3000'] });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(
      'config.listeners.relay.port is set by the chart, not by values (got 3000): the container listens on 2525; set the port clients use with services.smtp.ports.relay (default 25)',
    );
  });

  it('accepts any global value, as Helm passes to a subchart', () => {
    const result = helmTemplate({ values: [CI_VALUES.default], set: ['global.x=1', 'global.imageRegistry=mirror.example.com'] });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('image: "mirror.example.com/example/smtp-gateway:');
  });

  it('a canary needs the stable release name', () => {
    const result = helmTemplate({ values: [CI_VALUES.default], set: ['canary.enabled=true'] });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('canary.stableRelease must name the stable release');
  });
});
