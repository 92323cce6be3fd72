/**
 * The deploy scripts against the real chart: every `helm upgrade --install` the scripts run (recorded by
 * the stand-ins) is replayed as `helm template` with the real helm, the real chart and the real overlays,
 * at the clusters' Kubernetes version. So a value the scripts set that the chart's schema refuses, or a
 * canary that would not sit behind the stable release's Services, fails here rather than on a cluster.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXISTING, IMAGE, CANARY_TAG, canaryImage, podsOf, stableReplicas } from './helpers/aws-answers';
import { entrypoint, exposedPorts, imageEnv, imageUser } from './helpers/dockerfile';
import { scrapeGatewayMetrics } from './helpers/gateway-metrics';
import { REPO_ROOT } from './helpers/repo';
import { ScriptSandbox } from './helpers/stand-ins';

const HELM = join(REPO_ROOT, '.tools/bin/helm');

type K8sObject = Record<string, any>;

let box: ScriptSandbox;
beforeAll(() => {
  box = new ScriptSandbox();
});
afterAll(() => box.dispose());

/** The Kubernetes version the eksctl file gives the environment's cluster. */
const kubeVersion = (env: 'staging' | 'prod') =>
  String(parse(readFileSync(join(REPO_ROOT, `eksctl/${env}.yaml`), 'utf8')).metadata.version);

/** Run a script with the stand-ins and return the helm upgrade --install commands it ran, as argv. */
function helmUpgrades(script: string, args: string[], rules = EXISTING): string[][] {
  const result = box.run(script, [...args, '--yes'], { rules });
  expect(result.status, result.output).toBe(0);
  return result.calls.filter((call) => call[0] === 'helm' && call[1] === 'upgrade' && call[2] === '--install');
}

/** Replay one recorded `helm upgrade --install` as `helm template` and return the rendered objects. */
function render(upgrade: string[], env: 'staging' | 'prod'): K8sObject[] {
  const args = ['template', ...upgrade.slice(3), '--kube-version', kubeVersion(env)];
  const result = spawnSync(HELM, args, { encoding: 'utf8', timeout: 20_000 });
  expect(result.error, "run 'make tools' to install helm").toBeUndefined();
  expect(result.status, `helm ${args.join(' ')}\n${result.stderr}`).toBe(0);
  return parseAllDocuments(result.stdout)
    .map((doc) => doc.toJS() as K8sObject)
    .filter(Boolean);
}

const ofKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([key, value]) => labels[key] === value);

describe.each([
  ['staging', 'deploy-aws-staging.sh', 'staging'],
  ['production', 'deploy-aws-production.sh', 'prod'],
] as const)('a %s deploy', (_name, script, env) => {
  it('sets only values the chart accepts, and runs the image it pushed', () => {
    const upgrades = helmUpgrades(script, []);
    expect(upgrades).toHaveLength(2); // the load balancer controller, then the gateway
    const objects = render(upgrades[1], env);
    const [deployment] = ofKind(objects, 'Deployment');
    expect(deployment.spec.template.spec.containers[0].image).toBe(`${IMAGE}:${box.revision}`);
  });

  it('renders the LoadBalancer Services the script lists host names of, and a helm test to run', () => {
    const objects = render(helmUpgrades(script, [])[1], env);
    const balancers = ofKind(objects, 'Service').filter((s) => s.spec.type === 'LoadBalancer');
    expect(balancers.length).toBe(2); // two NLBs: relay, and submission + SMTPS
    for (const service of balancers) expect(service.metadata.labels['app.kubernetes.io/instance']).toBe('smtp-gateway');
    const tests = objects.filter((o) => o.metadata?.annotations?.['helm.sh/hook'] === 'test');
    expect(tests.length).toBeGreaterThan(0);
  });
});

describe('the chart runs the image as gateway/Dockerfile builds it', () => {
  const objects = () => render(helmUpgrades('deploy-aws-production.sh', [])[1], 'prod');

  it("as the image's uid/gid, on a read-only root with an emptyDir at the image's only writable path", () => {
    const [deployment] = ofKind(objects(), 'Deployment');
    const pod = deployment.spec.template.spec;
    const [container] = pod.containers;
    expect(container.securityContext).toMatchObject({ runAsUser: imageUser.uid, runAsGroup: imageUser.gid, readOnlyRootFilesystem: true });
    const tmp = container.volumeMounts.find((m: K8sObject) => m.mountPath === imageEnv.HOME);
    expect(tmp, `a volume mounted at ${imageEnv.HOME}`).toBeDefined();
    expect(pod.volumes.find((v: K8sObject) => v.name === tmp.name)).toHaveProperty('emptyDir');
  });

  it('on the ports the image exposes, with its ENTRYPOINT (node as PID 1) left as it is', () => {
    const [container] = ofKind(objects(), 'Deployment')[0].spec.template.spec.containers;
    expect(container.ports.map((p: K8sObject) => p.containerPort).sort()).toEqual([...exposedPorts].sort());
    expect(container.command).toBeUndefined();
    expect(container.args ?? []).toEqual([]);
    expect(entrypoint[0]).toBe('node');
  });
});

describe('a production canary', () => {
  let stable: K8sObject[];
  let canary: K8sObject[];
  beforeAll(() => {
    stable = render(helmUpgrades('deploy-aws-production.sh', [])[1], 'prod');
    const [canaryUpgrade] = helmUpgrades('deploy-aws-production.sh', ['rollout', '10'], [stableReplicas('2'), ...EXISTING]);
    expect(canaryUpgrade[3]).toBe('smtp-gateway-canary');
    canary = render(canaryUpgrade, 'prod');
  });

  it('renders pods and their configuration only: no Services, autoscaler, budget, monitor or test of its own', () => {
    const kinds = canary.map((o) => o.kind);
    expect(kinds).toContain('Deployment');
    expect(kinds.filter((kind) => !['ServiceAccount', 'ConfigMap', 'Secret', 'Deployment'].includes(kind))).toEqual([]);
    expect(canary.filter((o) => o.metadata?.annotations?.['helm.sh/hook'])).toEqual([]);
  });

  it('runs the replica count the script chose, with the new image', () => {
    const [deployment] = ofKind(canary, 'Deployment');
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.template.spec.containers[0].image).toBe(`${IMAGE}:${box.revision}`);
  });

  it("has pods that every one of the stable release's Services selects", () => {
    const [deployment] = ofKind(canary, 'Deployment');
    const podLabels = deployment.spec.template.metadata.labels;
    const services = ofKind(stable, 'Service');
    expect(services.length).toBeGreaterThan(0);
    for (const service of services) expect(matches(service.spec.selector, podLabels), service.metadata.name).toBe(true);
  });

  it("keeps its Deployment's selector off the stable pods", () => {
    const [canaryDeployment] = ofKind(canary, 'Deployment');
    const [stableDeployment] = ofKind(stable, 'Deployment');
    expect(matches(canaryDeployment.spec.selector.matchLabels, stableDeployment.spec.template.metadata.labels)).toBe(false);
    expect(canaryDeployment.metadata.name).not.toBe(stableDeployment.metadata.name);
  });

  it("is counted by neither the stable release's HPA (its Deployment's selector) nor its PDB, but covered by its NetworkPolicy", () => {
    const canaryPods = ofKind(canary, 'Deployment')[0].spec.template.metadata.labels;
    const [stableDeployment] = ofKind(stable, 'Deployment');
    const [hpa] = ofKind(stable, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef.name).toBe(stableDeployment.metadata.name);
    expect(matches(stableDeployment.spec.selector.matchLabels, canaryPods)).toBe(false);
    expect(matches(ofKind(stable, 'PodDisruptionBudget')[0].spec.selector.matchLabels, canaryPods)).toBe(false);
    expect(matches(ofKind(stable, 'NetworkPolicy')[0].spec.podSelector.matchLabels, canaryPods)).toBe(true);
  });

  it("is found by the script's look-ups: the stable Deployment by instance smtp-gateway, the canary by its release", () => {
    const deployments = [...ofKind(stable, 'Deployment'), ...ofKind(canary, 'Deployment')];
    const byInstance = (instance: string) =>
      deployments.filter((d) => d.metadata.labels['app.kubernetes.io/instance'] === instance).map((d) => d.metadata.name);
    expect(byInstance('smtp-gateway')).toEqual([ofKind(stable, 'Deployment')[0].metadata.name]);
    expect(byInstance('smtp-gateway-canary')).toEqual([ofKind(canary, 'Deployment')[0].metadata.name]);
  });

  it('promotes to the stable release with values the chart accepts', async () => {
    // The canary gates read both releases' /metrics first: one pod each, of a real gateway that relayed 100 messages.
    const metrics = await scrapeGatewayMetrics({ relayed: 100 });
    const pods = [...podsOf('smtp-gateway', { 'smtp-gateway-a': metrics }), ...podsOf('smtp-gateway-canary', { 'smtp-gateway-canary-a': metrics })];
    const [upgrade] = helmUpgrades('deploy-aws-production.sh', ['promote'], [canaryImage, ...pods, ...EXISTING]);
    const objects = render(upgrade, 'prod');
    expect(ofKind(objects, 'Deployment')[0].spec.template.spec.containers[0].image).toBe(`${IMAGE}:${CANARY_TAG}`);
    expect(ofKind(objects, 'HorizontalPodAutoscaler')).toHaveLength(1);
  });
});
