/**
 * deploy/cloudwatch-dashboard.json, which scripts/deploy.sh puts for the production cluster: a valid
 * dashboard body, whose widgets ask for metrics Container Insights publishes, with the dimensions it
 * publishes them under and the names this project really uses (the cluster of eksctl/prod.yaml, the
 * namespace of the deploy scripts, the Deployment and container the chart renders), and whose Logs
 * Insights queries match the gateway's real log lines. (deploy-scripts.test.ts checks the put itself.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createLogger } from '../../gateway/src/ops/logger';
import { render } from '../../synth/test/support';
import { REPO_ROOT } from './helpers/repo';

type Json = Record<string, any>;

const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy/cloudwatch-dashboard.json'), 'utf8')) as { widgets: Json[] };
const cluster = parse(readFileSync(join(REPO_ROOT, 'eksctl/prod.yaml'), 'utf8')) as Json;
const common = readFileSync(join(REPO_ROOT, 'scripts/lib/common.sh'), 'utf8');
const shellValue = (name: string) => new RegExp(`^${name}=(\\S+)$`, 'm').exec(common)?.[1];
const NAMESPACE = shellValue('NAMESPACE');
const RELEASE = shellValue('RELEASE');

/**
 * Container Insights metrics (namespace ContainerInsights) for Amazon EKS, from the CloudWatch user
 * guide's "Amazon EKS and Kubernetes Container Insights metrics": each with the dimension sets it is
 * published under. A widget naming anything else would draw nothing.
 */
const CONTAINER_INSIGHTS: Record<string, string[][]> = {
  cluster_node_count: [['ClusterName']],
  cluster_failed_node_count: [['ClusterName']],
  namespace_number_of_running_pods: [['ClusterName', 'Namespace'], ['ClusterName']],
  node_cpu_utilization: [['ClusterName'], ['ClusterName', 'InstanceId', 'NodeName']],
  node_memory_utilization: [['ClusterName'], ['ClusterName', 'InstanceId', 'NodeName']],
  pod_cpu_utilization: [['ClusterName', 'Namespace', 'PodName'], ['ClusterName', 'Namespace', 'Service'], ['ClusterName', 'Namespace'], ['ClusterName']],
  pod_memory_utilization: [['ClusterName', 'Namespace', 'PodName'], ['ClusterName', 'Namespace', 'Service'], ['ClusterName', 'Namespace'], ['ClusterName']],
  pod_cpu_utilization_over_pod_limit: [['ClusterName', 'Namespace', 'PodName'], ['ClusterName', 'Namespace', 'Service'], ['ClusterName', 'Namespace'], ['ClusterName']],
  pod_memory_utilization_over_pod_limit: [['ClusterName', 'Namespace', 'PodName'], ['ClusterName', 'Namespace', 'Service'], ['ClusterName', 'Namespace'], ['ClusterName']],
  pod_number_of_container_restarts: [['ClusterName', 'Namespace', 'PodName']],
  pod_network_rx_bytes: [['ClusterName', 'Namespace', 'PodName'], ['ClusterName', 'Namespace', 'Service'], ['ClusterName', 'Namespace'], ['ClusterName']],
  pod_network_tx_bytes: [['ClusterName', 'Namespace', 'PodName'], ['ClusterName', 'Namespace', 'Service'], ['ClusterName', 'Namespace'], ['ClusterName']],
  service_number_of_running_pods: [['ClusterName', 'Namespace', 'Service'], ['ClusterName']],
};

/** What the production release of the chart renders: the Deployment, its container, the Services. */
const rendered = render({ release: RELEASE, namespace: NAMESPACE, values: [join(REPO_ROOT, 'values/prod.yaml')] });
const deployment = rendered.find((doc) => doc.kind === 'Deployment')!;
const services = rendered.filter((doc) => doc.kind === 'Service').map((doc) => doc.metadata.name as string);

/** The value each dimension must have: Container Insights names a Deployment's pods after it. */
const EXPECTED_DIMENSIONS: Record<string, string[]> = {
  ClusterName: [cluster.metadata.name],
  Namespace: [NAMESPACE!],
  PodName: [deployment.metadata.name],
  Service: services,
};

/** Every metric line of every metric widget, as { metric, dimensions }. */
const metricLines = dashboard.widgets
  .filter((widget) => widget.type === 'metric')
  .flatMap((widget) => widget.properties.metrics as unknown[][])
  .map((line) => {
    const [namespace, metric, ...pairs] = line.filter((item) => typeof item === 'string') as string[];
    const dimensions: Record<string, string> = {};
    for (let i = 0; i + 1 < pairs.length; i += 2) dimensions[pairs[i]] = pairs[i + 1];
    return { namespace, metric, dimensions };
  });

const logQueries = dashboard.widgets.filter((widget) => widget.type === 'log').map((widget) => widget.properties.query as string);

describe('deploy/cloudwatch-dashboard.json', () => {
  it('is a dashboard body: widgets of known types, on the 24-column grid, in the deploy region', () => {
    expect(Object.keys(dashboard)).toEqual(['widgets']);
    // CloudWatch refuses a body over 1 MB
    expect(Buffer.byteLength(readFileSync(join(REPO_ROOT, 'deploy/cloudwatch-dashboard.json')))).toBeLessThan(1_000_000);
    expect(dashboard.widgets.length).toBeGreaterThan(3);
    for (const widget of dashboard.widgets) {
      expect(['metric', 'log', 'text']).toContain(widget.type);
      expect(Number.isInteger(widget.x) && Number.isInteger(widget.y)).toBe(true);
      expect(widget.width).toBeGreaterThanOrEqual(1);
      expect(widget.x + widget.width).toBeLessThanOrEqual(24);
      expect(widget.height).toBeGreaterThanOrEqual(1);
      if (widget.type !== 'text') expect(widget.properties.region, widget.properties.title).toBe(cluster.metadata.region);
      if (widget.type !== 'text') expect(widget.properties.title).toBeTruthy();
    }
  });

  it('has no two widgets on the same cells', () => {
    const taken = new Set<string>();
    for (const widget of dashboard.widgets) {
      for (let x = widget.x; x < widget.x + widget.width; x++) {
        for (let y = widget.y; y < widget.y + widget.height; y++) {
          expect(taken.has(`${x},${y}`), `cell ${x},${y}`).toBe(false);
          taken.add(`${x},${y}`);
        }
      }
    }
  });

  it('asks only for Container Insights metrics, each with dimensions it is published under', () => {
    expect(metricLines.length).toBeGreaterThan(5);
    for (const { namespace, metric, dimensions } of metricLines) {
      expect(namespace, metric).toBe('ContainerInsights');
      expect(Object.keys(CONTAINER_INSIGHTS), metric).toContain(metric);
      expect(CONTAINER_INSIGHTS[metric], `${metric} by ${Object.keys(dimensions)}`).toContainEqual(Object.keys(dimensions).sort());
    }
  });

  it("names the production cluster, the release's namespace, and the Deployment the chart renders", () => {
    expect(cluster.metadata.name).toBe('smtp-gateway-prod');
    for (const { metric, dimensions } of metricLines) {
      for (const [name, value] of Object.entries(dimensions)) expect(EXPECTED_DIMENSIONS[name], `${metric} ${name}`).toContain(value);
    }
    expect(metricLines.some((line) => line.dimensions.PodName === deployment.metadata.name)).toBe(true);
  });

  it("queries the cluster's Container Insights application log group, for the gateway's container", () => {
    expect(logQueries.length).toBeGreaterThan(0);
    const container = deployment.spec.template.spec.containers[0].name;
    for (const query of logQueries) {
      expect(query).toMatch(new RegExp(`^SOURCE '/aws/containerinsights/${cluster.metadata.name}/application' \\| `));
      expect(query).toContain(`kubernetes.namespace_name = '${NAMESPACE}'`);
      expect(query).toContain(`kubernetes.container_name = '${container}'`);
    }
  });

  it("parses the gateway's real JSON log lines (the Fluent Bit record's log field)", async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        callback();
      },
    });
    const logger = createLogger({ level: 'info', stream, base: { service: 'smtp-gateway' } });
    logger.info('transaction', { outcome: 'deferred', reason: 'upstream_temporary' });
    logger.warn('auth failed', { user: 'app1' });
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(2);
    const [transaction, warning] = lines;

    // Logs Insights: `like '…'` is a substring test; parse '…*…' captures the * as a glob.
    const glob = (pattern: string) => new RegExp(pattern.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('(.*?)'));
    const likes = (query: string) => [...query.matchAll(/filter log like '([^']+)'/g)].map((m) => m[1]);
    const parses = (query: string) => [...query.matchAll(/parse log '([^']+)' as (\w+)/g)].map((m) => ({ pattern: m[1], field: m[2] }));

    const byOutcome = logQueries.find((query) => query.includes('stats count(*) by outcome'))!;
    for (const substring of likes(byOutcome)) expect(transaction).toContain(substring);
    expect(warning).not.toContain(likes(byOutcome)[0]);
    const outcome = parses(byOutcome).find((p) => p.field === 'outcome')!;
    expect(glob(outcome.pattern).exec(transaction)?.[1]).toBe('deferred');

    const problems = logQueries.find((query) => query.includes("filter level in ['warn', 'error']"))!;
    const level = parses(problems).find((p) => p.field === 'level')!;
    expect(glob(level.pattern).exec(warning)?.[1]).toBe('warn');
    expect(glob(level.pattern).exec(transaction)?.[1]).toBe('info');
  });
});
