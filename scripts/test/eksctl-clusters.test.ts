/**
 * The EKS cluster definitions: valid against eksctl's own JSON schema (at the version pinned in
 * scripts/install-tools.sh), on a Kubernetes version that eksctl knows and the chart is validated
 * against, and carrying every figure of the plan for the two environments (the README's table under
 * "Deploying to AWS"), environment by environment.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';
import { eksctlKubernetesVersionsPath, eksctlSchemaPath, toolVersions } from './helpers/tool-versions';

const SCHEMA_PATH = eksctlSchemaPath();

/** The plan of the two environments, figure by figure; each entry names what it sizes. */
const PLAN = {
  staging: {
    file: 'eksctl/staging.yaml',
    clusterName: 'smtp-gateway-staging', // Cluster Name
    region: 'us-east-1', // Region (all AWS commands: --region us-east-1)
    instanceType: 't3.small', // Compute: Instance Type
    nodes: { min: 1, max: 3 }, // Compute: Node Count 1-3
    volumeGb: 20, // Storage: Volume Size 20 GB/node
    volumeType: 'gp3', // Storage: Volume Type
    totalStorageGb: { min: 20, max: 60 }, // Storage: Total Storage 20-60 GB
    vpcCidr: '10.1.0.0/16', // Network: VPC CIDR
    zones: ['us-east-1c', 'us-east-1d'], // Network: Availability Zones 2 (us-east-1c, 1d)
    natGateway: 'Single', // Network: NAT Gateways 1 (single)
    publicAccess: true, // Network: Public Access Yes
    logTypes: ['api', 'audit'], // Observability: API + Audit only
    logRetentionDays: 7, // Observability: Log Retention 7 days
    containerInsights: false, // Observability: CloudWatch dashboards in production only
  },
  production: {
    file: 'eksctl/prod.yaml',
    clusterName: 'smtp-gateway-prod',
    region: 'us-east-1',
    instanceType: 't3.medium',
    nodes: { min: 2, max: 6 },
    volumeGb: 50,
    volumeType: 'gp3',
    totalStorageGb: { min: 100, max: 300 },
    vpcCidr: '10.0.0.0/16',
    zones: ['us-east-1c', 'us-east-1d'],
    natGateway: 'Single', // 1 (single, consider 2 for HA)
    publicAccess: true,
    // All types (API, Audit, Auth, Controller, Scheduler), in eksctl's names.
    logTypes: ['api', 'audit', 'authenticator', 'controllerManager', 'scheduler'],
    logRetentionDays: 30,
    containerInsights: true,
  },
} as const;

type ClusterConfig = Record<string, any>;

const load = (file: string): ClusterConfig => parse(readFileSync(join(REPO_ROOT, file), 'utf8'));

let validate: ValidateFunction;

beforeAll(() => {
  if (!existsSync(SCHEMA_PATH)) {
    throw new Error(`eksctl's schema is missing at ${SCHEMA_PATH}; run 'make tools' (scripts/install-tools.sh) first`);
  }
  if (!existsSync(eksctlKubernetesVersionsPath())) {
    throw new Error(`eksctl's Kubernetes versions are missing at ${eksctlKubernetesVersionsPath()}; run 'make tools' first`);
  }
  // strict: false because eksctl's schema carries editor keywords (x-intellij-html-description, preferredOrder).
  const ajv = new Ajv({ strict: false, allErrors: true });
  validate = ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
});

const schemaErrors = (config: unknown): string[] =>
  validate(config) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);

describe.each(Object.entries(PLAN))('eksctl cluster for %s', (_env, plan) => {
  const config = load(plan.file);
  const nodeGroups: ClusterConfig[] = config.managedNodeGroups ?? [];

  it("validates against eksctl's JSON schema", () => {
    expect(schemaErrors(config)).toEqual([]);
  });

  it('is refused by the schema when a field is misspelt or out of range (the check can fail)', () => {
    const misspelt = structuredClone(config);
    misspelt.managedNodeGroups[0].volumeTyp = 'gp3';
    expect(schemaErrors(misspelt).join('\n')).toMatch(/managedNodeGroups\/0 must NOT have additional properties.*volumeTyp/);
    const badType = structuredClone(config);
    badType.managedNodeGroups[0].volumeType = 'gp9';
    expect(schemaErrors(badType).join('\n')).toMatch(/volumeType must be equal to one of the allowed values/);
  });

  it('names the cluster and region as planned', () => {
    expect(config.metadata.name).toBe(plan.clusterName);
    expect(config.metadata.region).toBe(plan.region);
  });

  it('runs the newest Kubernetes version the pinned eksctl knows, and the chart is validated against it', () => {
    const eksctl = JSON.parse(readFileSync(eksctlKubernetesVersionsPath(), 'utf8')) as { eksctl: string; known: string[]; default: string };
    expect(eksctl.eksctl).toBe(toolVersions().EKSCTL_VERSION);
    const minor = (version: string) => Number(version.split('.')[1]);
    const newest = eksctl.known.reduce((a, b) => (minor(b) > minor(a) ? b : a));
    expect(config.metadata.version, `eksctl ${eksctl.eksctl} knows ${eksctl.known.join(', ')}`).toBe(newest);
    expect(minor(config.metadata.version)).toBeGreaterThanOrEqual(minor(eksctl.default));
    // the rendered chart is checked against this version's schemas (synth/test/rendered-chart.test.ts)
    expect(toolVersions().K8S_CLUSTER_SCHEMA_VERSION).toMatch(new RegExp(`^v${config.metadata.version.replace('.', '\\.')}\\.\\d+$`));
  });

  it("runs a Kubernetes version the chart's kubeVersion accepts", () => {
    const chart = parse(readFileSync(join(REPO_ROOT, 'charts/smtp-gateway/Chart.yaml'), 'utf8'));
    const [, major, minor] = /^>=(\d+)\.(\d+)/.exec(chart.kubeVersion) ?? [];
    expect(major, `Chart.yaml kubeVersion ${chart.kubeVersion}`).toBeDefined();
    const [clusterMajor, clusterMinor] = String(config.metadata.version).split('.').map(Number);
    expect(clusterMajor).toBe(Number(major));
    expect(clusterMinor).toBeGreaterThanOrEqual(Number(minor));
  });

  it('runs one managed node group of the planned instance type, node count, volume size and type', () => {
    expect(config.nodeGroups ?? []).toEqual([]);
    expect(nodeGroups).toHaveLength(1);
    const [group] = nodeGroups;
    expect(group.instanceType).toBe(plan.instanceType);
    expect(group.instanceTypes).toBeUndefined();
    expect([group.minSize, group.maxSize]).toEqual([plan.nodes.min, plan.nodes.max]);
    expect(group.desiredCapacity).toBeGreaterThanOrEqual(plan.nodes.min);
    expect(group.desiredCapacity).toBeLessThanOrEqual(plan.nodes.max);
    expect(group.volumeSize).toBe(plan.volumeGb);
    expect(group.volumeType).toBe(plan.volumeType);
    expect(group.volumeEncrypted).toBe(true);
  });

  it('adds up to the planned total storage', () => {
    const [group] = nodeGroups;
    expect([group.minSize * group.volumeSize, group.maxSize * group.volumeSize]).toEqual([
      plan.totalStorageGb.min,
      plan.totalStorageGb.max,
    ]);
  });

  it('lays out the network as planned', () => {
    expect(config.vpc.cidr).toBe(plan.vpcCidr);
    expect(config.availabilityZones).toEqual(plan.zones);
    expect(config.vpc.nat.gateway).toBe(plan.natGateway);
    expect(config.vpc.clusterEndpoints.publicAccess).toBe(plan.publicAccess);
  });

  it('keeps the planned control-plane log types for the planned number of days', () => {
    expect(config.cloudWatch.clusterLogging.enableTypes).toEqual(plan.logTypes);
    expect(config.cloudWatch.clusterLogging.logRetentionInDays).toBe(plan.logRetentionDays);
  });

  it('gives the AWS Load Balancer Controller its IAM permissions through Pod Identity, with the agent add-on', () => {
    const addons = (config.addons as ClusterConfig[]).map((a) => a.name);
    expect(addons).toEqual(expect.arrayContaining(['vpc-cni', 'coredns', 'kube-proxy', 'eks-pod-identity-agent']));
    const lbc = (config.iam.podIdentityAssociations as ClusterConfig[]).find(
      (a) => a.serviceAccountName === 'aws-load-balancer-controller',
    );
    expect(lbc).toMatchObject({ namespace: 'kube-system', wellKnownPolicies: { awsLoadBalancerController: true } });
  });

  it(`${plan.containerInsights ? 'runs' : 'leaves out'} Container Insights (amazon-cloudwatch-observability, its IAM through Pod Identity)`, () => {
    const addon = (config.addons as ClusterConfig[]).find((a) => a.name === 'amazon-cloudwatch-observability');
    if (!plan.containerInsights) {
      expect(addon).toBeUndefined();
      return;
    }
    expect(addon?.podIdentityAssociations).toEqual([
      {
        namespace: 'amazon-cloudwatch',
        serviceAccountName: 'cloudwatch-agent',
        permissionPolicyARNs: ['arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy'],
      },
    ]);
    // Pod Identity needs its agent on the nodes
    expect((config.addons as ClusterConfig[]).map((a) => a.name)).toContain('eks-pod-identity-agent');
  });

  it('runs metrics-server, for the HorizontalPodAutoscaler (production overlay) and kubectl top', () => {
    expect((config.addons as ClusterConfig[]).map((a) => a.name)).toContain('metrics-server');
  });

  it('keeps nodes off the internet and off IMDSv1', () => {
    const [group] = nodeGroups;
    expect(group.privateNetworking).toBe(true);
    expect(group.disableIMDSv1).toBe(true);
  });
});

describe("the Kubernetes versions the chart is validated against", () => {
  it("are the chart's kubeVersion floor and the clusters' version", () => {
    const chart = parse(readFileSync(join(REPO_ROOT, 'charts/smtp-gateway/Chart.yaml'), 'utf8'));
    const [, floor] = /^>=(\d+\.\d+)/.exec(chart.kubeVersion) ?? [];
    expect(toolVersions().K8S_FLOOR_SCHEMA_VERSION).toMatch(new RegExp(`^v${floor.replace('.', '\\.')}\\.\\d+$`));
    const clusters = Object.values(PLAN).map((plan) => load(plan.file).metadata.version);
    expect(new Set(clusters).size).toBe(1);
    expect(toolVersions().K8S_CLUSTER_SCHEMA_VERSION.startsWith(`v${clusters[0]}.`)).toBe(true);
  });
});

describe('staging and production', () => {
  it('differ only where the plan says they differ', () => {
    const strip = (config: ClusterConfig) => {
      const copy = structuredClone(config);
      delete copy.metadata.name;
      delete copy.metadata.tags.environment;
      delete copy.vpc.cidr;
      delete copy.cloudWatch;
      copy.addons = copy.addons.filter((addon: ClusterConfig) => addon.name !== 'amazon-cloudwatch-observability');
      delete copy.iam.podIdentityAssociations[0].roleName;
      const group = copy.managedNodeGroups[0];
      for (const key of ['instanceType', 'minSize', 'desiredCapacity', 'maxSize', 'volumeSize', 'labels']) delete group[key];
      return copy;
    };
    expect(strip(load(PLAN.production.file))).toEqual(strip(load(PLAN.staging.file)));
  });
});
