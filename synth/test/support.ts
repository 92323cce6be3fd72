/** Shared by the chart suites: the repo's pinned tools (helm, kubeconform) and ways to render the chart. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { kubernetesSchemasDir, toolVersions } from '../../scripts/test/helpers/tool-versions';

export const ROOT = resolve(__dirname, '..', '..');
export const CHART = join(ROOT, 'charts', 'smtp-gateway');
export const OVERLAYS = { staging: join(ROOT, 'values', 'staging.yaml'), prod: join(ROOT, 'values', 'prod.yaml') } as const;
/** The chart's ci/<name>-values.yaml files (also linted by `make lint-chart`), by name. */
export const CI_VALUES: Record<string, string> = Object.fromEntries(
  readdirSync(join(CHART, 'ci'))
    .filter((file) => file.endsWith('-values.yaml'))
    .map((file) => [file.replace(/-values\.yaml$/, ''), join(CHART, 'ci', file)]),
);
const TOOLS = join(ROOT, '.tools');
/** The Kubernetes versions the chart is validated against (scripts/install-tools.sh pins them). */
export const KUBERNETES = {
  /** The chart's kubeVersion floor. */
  floor: toolVersions().K8S_FLOOR_SCHEMA_VERSION,
  /** What the EKS clusters (eksctl/*.yaml) run. */
  cluster: toolVersions().K8S_CLUSTER_SCHEMA_VERSION,
} as const;
const ENV = { ...process.env, PATH: `${join(TOOLS, 'bin')}:${process.env.PATH}`, HELM_PLUGINS: join(TOOLS, 'helm-plugins') };

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], input?: string): Run {
  const result = spawnSync(command, args, { env: ENV, encoding: 'utf8', input, cwd: ROOT, maxBuffer: 64 << 20 });
  if (result.error) throw new Error(`${command} could not run (${result.error.message}); run scripts/install-tools.sh`);
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

/** A values file in a temp folder, for overlays written by a test (JSON: no YAML 1.1 surprises like `on`). */
export function valuesFile(values: unknown): string {
  const file = join(tempDir('values'), 'values.yaml');
  writeFileSync(file, JSON.stringify(values));
  return file;
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  values?: string[];
  set?: string[];
  /** Pretend the cluster runs the Prometheus Operator (serves the ServiceMonitor and PrometheusRule APIs). */
  withPrometheusOperator?: boolean;
  /** Further APIs the cluster pretends to serve, e.g. monitoring.coreos.com/v1/PrometheusRule. */
  apiVersions?: string[];
  chart?: string;
  /** Kubernetes version helm renders for (vX.Y.Z). @default KUBERNETES.floor */
  kubeVersion?: string;
}

export function helmTemplate(options: RenderOptions = {}): Run {
  const args = ['template', options.release ?? 'smtp-gateway', options.chart ?? CHART, '--namespace', options.namespace ?? 'smtp-gateway', '--kube-version', options.kubeVersion ?? KUBERNETES.floor];
  for (const file of options.values ?? []) args.push('--values', file);
  for (const pair of options.set ?? []) args.push('--set', pair);
  if (options.withPrometheusOperator) args.push('--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor', '--api-versions', 'monitoring.coreos.com/v1/PrometheusRule');
  for (const api of options.apiVersions ?? []) args.push('--api-versions', api);
  return run('helm', args);
}

/** Rendered manifests as objects; throws with helm's message when rendering fails. */
export function render(options: RenderOptions = {}): Array<Record<string, any>> {
  const result = helmTemplate(options);
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return YAML.parseAllDocuments(result.stdout)
    .map((d) => d.toJS())
    .filter((d) => d);
}

/** kubeconform in strict mode against one pinned Kubernetes version's + the ServiceMonitor and PrometheusRule schemas, offline. */
export function kubeconform(manifests: string, kubeVersion: string = KUBERNETES.floor): Run {
  const schemas = kubernetesSchemasDir(kubeVersion);
  if (!existsSync(join(schemas, 'deployment-apps-v1.json'))) throw new Error(`no schemas in ${schemas}; run scripts/install-tools.sh`);
  return run('kubeconform', ['-strict', '-summary', '-output', 'text', '-schema-location', `${schemas}/{{ .ResourceKind }}{{ .KindSuffix }}.json`, '-'], manifests);
}
