/**
 * The versions scripts/install-tools.sh pins (its --versions mode), and where it puts what it installs,
 * so the tests validate against exactly what the script installs and the versions live in one place.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './repo';

export interface ToolVersions {
  readonly HELM_VERSION: string;
  readonly EKSCTL_VERSION: string;
  readonly KUBECONFORM_VERSION: string;
  /** Kubernetes schemas for the chart's kubeVersion floor. */
  readonly K8S_FLOOR_SCHEMA_VERSION: string;
  /** Kubernetes schemas for the version the EKS clusters run. */
  readonly K8S_CLUSTER_SCHEMA_VERSION: string;
  readonly PROMETHEUS_OPERATOR_VERSION: string;
}

let cached: ToolVersions | undefined;

export function toolVersions(): ToolVersions {
  if (cached) return cached;
  const output = execFileSync('bash', [join(REPO_ROOT, 'scripts/install-tools.sh'), '--versions'], { encoding: 'utf8' });
  const pairs = output
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split('=', 2) as [string, string]);
  cached = Object.fromEntries(pairs) as unknown as ToolVersions;
  return cached;
}

const SCHEMAS = join(REPO_ROOT, '.tools', 'schemas');

/** eksctl's ClusterConfig JSON schema at the pinned eksctl version. */
export const eksctlSchemaPath = (): string => join(SCHEMAS, `eksctl-${toolVersions().EKSCTL_VERSION}-clusterconfig.schema.json`);

/** The Kubernetes versions the pinned eksctl knows: { known: ["1.10", …], default: "1.34" }. */
export const eksctlKubernetesVersionsPath = (): string => join(SCHEMAS, `eksctl-${toolVersions().EKSCTL_VERSION}-kubernetes-versions.json`);

/** Strict per-kind kubeconform schemas of one Kubernetes version (e.g. v1.35.4). */
export const kubernetesSchemasDir = (version: string): string => join(SCHEMAS, `kubernetes-${version}-strict`);

/** Both Kubernetes versions the chart is validated against: its kubeVersion floor, then the clusters'. */
export const kubernetesSchemaVersions = (): readonly string[] => [toolVersions().K8S_FLOOR_SCHEMA_VERSION, toolVersions().K8S_CLUSTER_SCHEMA_VERSION];
