/**
 * The chart, the image built from gateway/Dockerfile and real mail on a real one-node Kubernetes
 * (scripts/test-cluster.sh): install with the staging overlay, upgrade to the prod overlay while mail
 * flows, delete a pod while mail flows, roll back, two releases side by side, uninstall. Mail goes from
 * this process to the Service's ClusterIP (kube-proxy) and from the pods to a recording upstream on the
 * node's own address, with STARTTLS and AUTH as to SES. Figures go to the test output.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { check, type CheckReport } from '../bench/lib/checker';
import { runLoad, type LoadResult } from '../bench/lib/load-generator';
import { type RecordingUpstream, startRecordingUpstream } from '../testkit/recording-upstream';
import { makeTestCertificates } from '../testkit/certs';
import { hashPassword } from '../gateway/src/smtp/auth-users';
import { ACCOUNT, writeStandIns } from './helpers/deploy-stand-ins';
import { connect, type Kube, REPO_ROOT, run, runUnchecked, waitFor } from './helpers/test-cluster';

const NAMESPACE = 'smtp-gateway';
const RELEASE = 'smtp-gateway';
const SECRETS = ['smtp-gateway-credentials', 'smtp-gateway-tls'];
const UPSTREAM = { user: 'ses-smtp-user', pass: 'ses-smtp-password-e2e' };
const VALUES = join(REPO_ROOT, 'e2e/test-cluster-values.yaml');
const ROLLOUT_VALUES = join(REPO_ROOT, 'e2e/rollout-values.yaml');
const overlay = (name: 'staging' | 'prod') => join(REPO_ROOT, `values/${name}.yaml`);

let kube: Kube;
let upstream: RecordingUpstream;
let work: string;
let runs = 0;
let lastRunId = '';

const figures: string[] = [];
function report(line: string): void {
  figures.push(line);
  console.log(`cluster: ${line}`);
}

async function clusterIp(release = RELEASE): Promise<string> {
  const service = await kube.json(['-n', NAMESPACE, 'get', 'service', `${release}-smtp`]);
  return service.spec.clusterIP as string;
}

async function readyPods(release = RELEASE): Promise<{ name: string; node: string }[]> {
  const pods = await kube.json(['-n', NAMESPACE, 'get', 'pods', '-l', `app.kubernetes.io/instance=${release},app.kubernetes.io/component!=test`]);
  return pods.items
    .filter((pod: any) => !pod.metadata.deletionTimestamp && pod.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'))
    .map((pod: any) => ({ name: pod.metadata.name, node: pod.spec.nodeName }));
}

/** Mail at concurrency C to the release's ClusterIP for `durationMs` while `during` runs, then the check. */
async function mailWhile(label: string, concurrency: number, durationMs: number, during: () => Promise<void>, maxMessages?: number) {
  const runId = `e2e${++runs}x${Date.now().toString(36)}`;
  lastRunId = runId;
  const ip = await clusterIp();
  const load: Promise<LoadResult> = runLoad({
    target: () => ({ host: ip, port: 25 }),
    localAddresses: [kube.env.NODE_IP],
    concurrency,
    messageBytes: 4096,
    durationMs,
    maxMessages,
    replyTimeoutMs: 60_000,
    runId,
  });
  // The fault starts once mail is flowing.
  if (maxMessages === undefined) await new Promise((resolve) => setTimeout(resolve, 3000));
  await during();
  const result = await load;
  // Deliveries the pods still hold finish within their drain; wait for the count to settle.
  await settle(runId, result);
  const verdict = check(result.outcomes, upstream.deliveries, runId);
  report(
    `${label}: C=${concurrency}, ${Math.round(result.elapsedMs / 1000)} s, sent ${verdict.sent}, accepted ${verdict.accepted}, ` +
      `4xx ${verdict.refusedTemporary}, no reply ${verdict.noReply}, failed connects ${result.connectFailures}, ` +
      `delivered ${verdict.delivered}, lost ${verdict.lost}, duplicated ${verdict.duplicated}, unacknowledged ${verdict.unacknowledged}`,
  );
  return verdict;
}

async function settle(runId: string, result: LoadResult): Promise<void> {
  const accepted = result.outcomes.filter((o) => o.code === 250 && o.stage === 'dot').length;
  const count = () => [...upstream.deliveries.keys()].filter((id) => id.startsWith(`${runId}-`)).length;
  await waitFor('accepted messages at the upstream', async () => (count() >= accepted ? true : undefined), 60_000).catch(() => undefined);
}

beforeAll(async () => {
  kube = await connect();
  work = mkdtempSync(join(tmpdir(), 'smtp-gateway-e2e-'));
  const certs = await makeTestCertificates(work, {
    commonName: 'smtp.staging.example.com',
    altNames: ['DNS:smtp.staging.example.com', 'DNS:smtp.example.com', `IP:${kube.env.NODE_IP}`],
  });
  // The smarthost stand-in listens on the node's address, which the pods reach through the bridge.
  upstream = await startRecordingUpstream({ host: kube.env.NODE_IP, port: 10587, tls: { key: certs.key, cert: certs.cert }, auth: UPSTREAM });

  await kube.kubectl(['create', 'namespace', NAMESPACE]);
  const users = join(work, 'auth-users');
  writeFileSync(users, `app1:${await hashPassword('app1-password')}\n`);
  await kube.kubectl([
    '-n', NAMESPACE, 'create', 'secret', 'generic', SECRETS[0],
    `--from-literal=upstream-username=${UPSTREAM.user}`, `--from-literal=upstream-password=${UPSTREAM.pass}`, `--from-file=auth-users=${users}`,
  ]);
  await kube.kubectl(['-n', NAMESPACE, 'create', 'secret', 'tls', SECRETS[1], `--cert=${certs.certFile}`, `--key=${certs.keyFile}`]);
  // The prod overlay turns the ServiceMonitor on: its CRD, as the prometheus-operator module ships it.
  await kube.kubectl(['apply', '--server-side', '-f', await serviceMonitorCrd()]);
  await waitFor('the ServiceMonitor CRD', async () => ((await kube.kubectl(['get', 'crd', 'servicemonitors.monitoring.coreos.com'])) ? true : undefined));
});

afterAll(async () => {
  await upstream?.close();
  if (work) rmSync(work, { recursive: true, force: true });
  if (figures.length) console.log(`cluster figures:\n  ${figures.join('\n  ')}`);
});

/** The ServiceMonitor CRD from the prometheus-operator module, at the version scripts/install-tools.sh pins. */
async function serviceMonitorCrd(): Promise<string> {
  const script = readFileSync(join(REPO_ROOT, 'scripts/install-tools.sh'), 'utf8');
  const version = /^PROMETHEUS_OPERATOR_VERSION=(\S+)$/m.exec(script)?.[1];
  if (!version) throw new Error('scripts/install-tools.sh has no PROMETHEUS_OPERATOR_VERSION= line');
  // Outside any Go module, so the download (cached by Go) touches no go.mod.
  const json = await run('go', ['mod', 'download', '-json', `github.com/prometheus-operator/prometheus-operator@${version}`], {
    env: { ...process.env, GOFLAGS: '-mod=mod', GOWORK: 'off' },
    cwd: join(REPO_ROOT, '.tools'),
  });
  return join(JSON.parse(json).Dir, 'example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml');
}

describe.sequential('the chart on a real cluster', () => {
  it('runs on the Kubernetes minor the eksctl clusters run', async () => {
    const version = JSON.parse(await kube.kubectl(['version', '-o', 'json'])).serverVersion;
    const eksctl = readFileSync(join(REPO_ROOT, 'eksctl/prod.yaml'), 'utf8');
    const wanted = /^\s*version:\s*"?(\d+\.\d+)"?/m.exec(eksctl)?.[1];
    report(`server ${version.gitVersion}, eksctl metadata.version ${wanted}`);
    expect(`${version.major}.${version.minor}`).toBe(wanted);
  });

  it('1. installs the staging overlay: pods Ready through the real probes, helm test passes, mail arrives with the Received header', async () => {
    const started = Date.now();
    await kube.helm(['install', RELEASE, join(REPO_ROOT, 'charts/smtp-gateway'), '-n', NAMESPACE, '-f', overlay('staging'), '-f', VALUES, '--wait', '--timeout', '3m']);
    const pods = await readyPods();
    report(`install staging: ${pods.length} pod(s) Ready in ${Math.round((Date.now() - started) / 1000)} s`);
    expect(pods.length).toBe(1);

    const test = await kube.helmUnchecked(['test', RELEASE, '-n', NAMESPACE, '--logs', '--timeout', '3m']);
    expect(test.code, `helm test:\n${test.stdout}\n${test.stderr}`).toBe(0);
    expect(test.stdout).toMatch(/Phase:\s+Succeeded/);
    expect(test.stdout).toMatch(/helm test: OK, .* speaks SMTP/);

    const verdict = await mailWhile('install staging, one message', 1, 10_000, async () => undefined, 1);
    expect(verdict.accepted).toBe(1);
    expect(verdict.lost).toBe(0);
    const [head] = [...upstream.heads.entries()].filter(([id]) => id.startsWith(`${lastRunId}-`)).map(([, h]) => h);
    const unfolded = (head ?? '').replace(/\r?\n[ \t]+/g, ' ');
    expect(unfolded).toMatch(/^Received: from \S+ \(.*\) by smtp\.staging\.example\.com \(smtp-gateway\) with E?SMTPS?A? id /m);
  });

  it('2. upgrades to the prod overlay while mail flows (C=10): nothing lost or duplicated; HPA, PDB and NetworkPolicy exist', async () => {
    const started = Date.now();
    const verdict = await mailWhile('upgrade staging -> prod', 10, 60_000, async () => {
      await kube.helm(['upgrade', RELEASE, join(REPO_ROOT, 'charts/smtp-gateway'), '-n', NAMESPACE, '-f', overlay('prod'), '-f', VALUES, '--wait', '--timeout', '3m']);
      report(`upgrade to prod: helm done in ${Math.round((Date.now() - started) / 1000)} s`);
    });
    expect(verdict.lost).toBe(0);
    expect(verdict.duplicated).toBe(0);
    expect(verdict.unacknowledged).toBe(0);
    expect(verdict.accepted).toBeGreaterThan(0);
    for (const kind of ['hpa', 'pdb', 'networkpolicy', 'servicemonitor']) {
      const found = await kube.json(['-n', NAMESPACE, 'get', kind, '-l', `app.kubernetes.io/instance=${RELEASE}`]);
      expect(found.items.length, kind).toBe(1);
    }
    const pods = await waitFor('2 Ready pods', async () => {
      const ready = await readyPods();
      return ready.length >= 2 ? ready : undefined;
    });
    report(`prod: ${pods.length} pods Ready on ${[...new Set(pods.map((pod) => pod.node))].join(', ')}`);
  });

  // What this proves: with nodes in two zones, the scheduler places the prod overlay's pods one per zone
  // under the chart's topologySpreadConstraints (zone key, maxSkew 1, DoNotSchedule, the release's own
  // selector). What it does not: the pod "in" us-east-1d is kwok's fake (no container, a made-up IP in a
  // blackholed range), so nothing here shows a pod serving mail in a second zone or surviving a zone's loss.
  // No mail flows while the fake node exists: its pod would be a Service endpoint that swallows connections.
  it('2b. spreads the prod pods over two zones (a kwok node stands in for us-east-1d while no mail flows)', async () => {
    const cluster = join(REPO_ROOT, 'scripts/test-cluster.sh');
    const podZones = async (): Promise<{ name: string; node: string }[]> => {
      const pods = await kube.json(['-n', NAMESPACE, 'get', 'pods', '-l', `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component!=test`]);
      return pods.items.filter((pod: any) => !pod.metadata.deletionTimestamp && pod.spec.nodeName).map((pod: any) => ({ name: pod.metadata.name as string, node: pod.spec.nodeName as string }));
    };
    await run(cluster, ['fake-node', 'add'], { timeoutMs: 180_000 });
    try {
      const zoneOf = new Map<string, string>();
      for (const node of (await kube.json(['get', 'nodes'])).items) zoneOf.set(node.metadata.name, node.metadata.labels['topology.kubernetes.io/zone']);
      expect([...zoneOf.values()].sort()).toEqual([kube.env.NODE_ZONE, kube.env.FAKE_NODE_ZONE].sort());
      const before = await podZones();
      // All at once, so the scheduler places both new pods with the two zones to choose from.
      await kube.kubectl(['-n', NAMESPACE, 'delete', 'pods', ...before.map((pod) => pod.name), '--wait=false']);
      const placed = await waitFor('2 new prod pods scheduled', async () => {
        const now = (await podZones()).filter((pod) => !before.some((old) => old.name === pod.name));
        return now.length >= 2 ? now : undefined;
      });
      const zones = placed.map((pod) => zoneOf.get(pod.node)).sort();
      report(`prod spread: ${placed.map((pod) => `${pod.name} on ${pod.node} (${zoneOf.get(pod.node)})`).join(', ')}; the ${kube.env.FAKE_NODE_ZONE} pod is kwok's fake (scheduling proven, serving not)`);
      expect(zones).toEqual([kube.env.NODE_ZONE, kube.env.FAKE_NODE_ZONE].sort());
    } finally {
      await run(cluster, ['fake-node', 'remove'], { timeoutMs: 180_000 });
    }
    // Mail flows again only once every Service endpoint is a real pod on the real node.
    const pods = await waitFor('2 Ready pods on the real node, the only endpoints', async () => {
      const ready = await readyPods();
      if (ready.length < 2 || ready.some((pod) => pod.node !== kube.env.NODE_NAME)) return undefined;
      const slices = await kube.json(['-n', NAMESPACE, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=${RELEASE}-smtp`]);
      const endpoints = slices.items.flatMap((slice: any) => (slice.endpoints ?? []).map((e: any) => e.targetRef?.name as string)).sort();
      return JSON.stringify(endpoints) === JSON.stringify(ready.map((pod) => pod.name).sort()) ? ready : undefined;
    }, 180_000);
    expect(pods).toHaveLength(2);
  });

  it('3. deletes a pod while mail flows (C=10): nothing lost or duplicated', async () => {
    const [victim] = await readyPods();
    const verdict = await mailWhile(`delete pod ${victim.name}`, 10, 40_000, async () => {
      await kube.kubectl(['-n', NAMESPACE, 'delete', 'pod', victim.name, '--wait=false']);
    });
    expect(verdict.lost).toBe(0);
    expect(verdict.duplicated).toBe(0);
    expect(verdict.unacknowledged).toBe(0);
    expect(verdict.accepted).toBeGreaterThan(0);
  });

  it('4. rolls back, runs a second release beside it, and uninstalls both leaving only the Secrets made first', async () => {
    await kube.helm(['rollback', RELEASE, '1', '-n', NAMESPACE, '--wait', '--timeout', '3m']);
    const values = await kube.helm(['get', 'values', RELEASE, '-n', NAMESPACE, '-o', 'json']);
    expect(JSON.parse(values).config.hostname).toBe('smtp.staging.example.com');
    await waitFor('the rolled-back release serving', async () => ((await readyPods()).length >= 1 ? true : undefined));
    expect((await kube.json(['-n', NAMESPACE, 'get', 'hpa', '-l', `app.kubernetes.io/instance=${RELEASE}`])).items).toHaveLength(0);

    const second = `${RELEASE}-b`;
    await kube.helm(['install', second, join(REPO_ROOT, 'charts/smtp-gateway'), '-n', NAMESPACE, '-f', overlay('staging'), '-f', VALUES, '--wait', '--timeout', '3m']);
    expect(await readyPods(second)).toHaveLength(1);
    // Each release's Service sends traffic only to its own pods (ready endpoints; the rolled-back
    // release's old pods drain for a while as terminating endpoints).
    for (const release of [RELEASE, second]) {
      const [targets, own] = await waitFor(`${release}-smtp's ready endpoints = its pods`, async () => {
        const slices = await kube.json(['-n', NAMESPACE, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=${release}-smtp`]);
        const ready = slices.items.flatMap((s: any) => (s.endpoints ?? []).filter((e: any) => e.conditions?.ready).map((e: any) => e.targetRef?.name as string)).sort();
        const pods = (await readyPods(release)).map((p) => p.name).sort();
        return JSON.stringify(ready) === JSON.stringify(pods) ? [ready, pods] : undefined;
      }, 120_000);
      expect(targets, release).toEqual(own);
      expect(own.length, release).toBeGreaterThan(0);
    }
    report(`two releases in ${NAMESPACE}: ${RELEASE} and ${second} each Ready, each Service on its own pods`);

    await kube.helm(['uninstall', second, '-n', NAMESPACE, '--wait', '--timeout', '3m']);
    await kube.helm(['uninstall', RELEASE, '-n', NAMESPACE, '--wait', '--timeout', '3m']);
    // The test pod kept for `helm test --logs` goes too: the chart's pre-delete hook replaces and removes it.
    const expected = SECRETS.map((name) => `secret/${name}`).sort();
    const leftovers = async () =>
      (await kube.kubectl(['-n', NAMESPACE, 'get', 'all,configmap,secret,serviceaccount,pdb,hpa,networkpolicy,servicemonitor,endpointslice,role,rolebinding', '-o', 'name']))
        .split('\n')
        .filter(Boolean)
        // What every namespace has.
        .filter((name) => name !== 'serviceaccount/default' && name !== 'configmap/kube-root-ca.crt')
        .sort();
    const left = await waitFor('only the Secrets made first', async () => {
      const names = await leftovers();
      return JSON.stringify(names) === JSON.stringify(expected) ? names : undefined;
    }, 120_000).catch(async (error) => {
      throw new Error(`${String(error)}; left: ${(await leftovers()).join(', ')}`);
    });
    expect(left).toEqual(expected);
    report(`uninstall: left ${left.join(', ')} (the kept helm test pod removed by the chart's pre-delete hook)`);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Scenario 5: the gradual rollout through scripts/deploy-aws-production.sh, with the real kubectl and helm
// against this cluster. aws, eksctl and docker are stand-ins this test writes onto PATH (helpers/deploy-stand-ins.ts): they record every
// call (asserted below) and answer as AWS would for an existing production cluster (account 123456789012).
// `aws eks update-kubeconfig` points the context smtp-gateway-prod at this cluster; `docker build/push`
// only record: the image the script computes (<account>.dkr.ecr.us-east-1.amazonaws.com/smtp-gateway:
// <revision>) is the one make test-cluster built from gateway/Dockerfile, imported under that name. The
// script runs from a clean clone of HEAD, as production refuses a dirty work tree. The stable release is
// installed with helm as `deploy` would (deploy itself installs the AWS Load Balancer Controller from its
// chart repository, a download this test may not make); a Ready Deployment named like the controller with
// its webhook Service stands in for it, and this test fills in the LoadBalancer Services' status with a
// host name under .invalid, as the controller would with the NLB's (nothing here resolves or reaches it).

const CANARY = `${RELEASE}-canary`;

/** The smtp_gateway_messages_total{outcome="relayed"} of every running pod of a release, added up. */
async function relayedBy(release: string): Promise<number> {
  const pods = await kube.json(['-n', NAMESPACE, 'get', 'pods', '-l', `app.kubernetes.io/name=smtp-gateway,app.kubernetes.io/instance=${release}`, '--field-selector', 'status.phase=Running']);
  let total = 0;
  for (const pod of pods.items) {
    const text = await kube.kubectl(['get', '--raw', `/api/v1/namespaces/${NAMESPACE}/pods/${pod.metadata.name}:9090/proxy/metrics`]);
    for (const line of text.split('\n')) {
      if (line.startsWith('smtp_gateway_messages_total{') && line.includes('outcome="relayed"')) total += Number(line.split(/\s+/)[1]);
    }
  }
  return total;
}

async function readyCount(release: string): Promise<number> {
  return (await readyPods(release)).length;
}

/** Waits until the smtp Service's ready endpoints are exactly the ready pods of the stable and canary releases. */
async function endpointsSettled(): Promise<void> {
  await waitFor('the smtp Service on every ready pod of both releases', async () => {
    const slices = await kube.json(['-n', NAMESPACE, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=${RELEASE}-smtp`]);
    const all = slices.items.flatMap((slice: any) => slice.endpoints ?? []);
    const ready = all.filter((e: any) => e.conditions?.ready).map((e: any) => e.targetRef?.name as string).sort();
    const pods = [...(await readyPods(RELEASE)), ...(await readyPods(CANARY))].map((pod) => pod.name).sort();
    return all.length === ready.length && JSON.stringify(ready) === JSON.stringify(pods) ? true : undefined;
  }, 180_000);
}

/**
 * Mail over many short connections (kube-proxy picks a pod per connection, so the share needs many of
 * them): rounds of C=10 connections, one message each. Returns the summed verdict and each release's
 * share of what was relayed, from the releases' own /metrics.
 */
async function mailForShares(label: string, connections: number): Promise<{ verdict: CheckReport; relayed: Record<string, number> }> {
  const before = { [RELEASE]: await relayedBy(RELEASE), [CANARY]: await relayedBy(CANARY) };
  const ip = await clusterIp();
  const sum: Record<string, number> = {};
  for (let round = 0; round < connections / 10; round++) {
    const runId = `e2e${++runs}x${Date.now().toString(36)}`;
    const result = await runLoad({ target: () => ({ host: ip, port: 25 }), localAddresses: [kube.env.NODE_IP], concurrency: 10, maxMessages: 10, messageBytes: 2048, durationMs: 30_000, replyTimeoutMs: 60_000, runId });
    await settle(runId, result);
    const verdict = check(result.outcomes, upstream.deliveries, runId);
    for (const [key, value] of Object.entries(verdict)) if (typeof value === 'number') sum[key] = (sum[key] ?? 0) + value;
  }
  const relayed = { [RELEASE]: (await relayedBy(RELEASE)) - before[RELEASE], [CANARY]: (await relayedBy(CANARY)) - before[CANARY] };
  const verdict = sum as unknown as CheckReport;
  report(
    `${label}: ${connections} connections, sent ${verdict.sent}, accepted ${verdict.accepted}, delivered ${verdict.delivered}, lost ${verdict.lost}, ` +
      `duplicated ${verdict.duplicated}; relayed by ${RELEASE} ${relayed[RELEASE]}, by ${CANARY} ${relayed[CANARY]}`,
  );
  return { verdict, relayed };
}

/**
 * The canary's share of relayed messages against its share of ready pods. kube-proxy (iptables) sends each
 * new connection to a pod at random with equal odds, so over n messages on n connections the canary's share
 * is binomial: the tolerance is 4.5 standard deviations, sqrt(p(1-p)/n), a false alarm once in ~150 000 runs.
 */
function expectShare(relayed: Record<string, number>, canaryPods: number, stablePods: number): void {
  const n = relayed[RELEASE] + relayed[CANARY];
  const p = canaryPods / (canaryPods + stablePods);
  const share = relayed[CANARY] / n;
  const tolerance = 4.5 * Math.sqrt((p * (1 - p)) / n);
  report(`  canary share ${(100 * share).toFixed(1)}% of ${n} relayed; replica share ${(100 * p).toFixed(1)}% (${canaryPods} of ${canaryPods + stablePods} pods), tolerance ±${(100 * tolerance).toFixed(1)} points`);
  expect(Math.abs(share - p), `canary share ${share} vs replica share ${p}`).toBeLessThanOrEqual(tolerance);
}

/** After promote or abort: the mail that flowed meanwhile all arrived once; only the stable release is left and relays everything. */
async function expectStableAlone(verdict: CheckReport, label: string): Promise<void> {
  expect(verdict.lost).toBe(0);
  expect(verdict.duplicated).toBe(0);
  expect(verdict.unacknowledged).toBe(0);
  expect(await kube.helm(['list', '-n', NAMESPACE, '-q'])).toBe(`${RELEASE}\n`);
  await waitFor('no canary pod left', async () => ((await kube.json(['-n', NAMESPACE, 'get', 'pods', '-l', `app.kubernetes.io/instance=${CANARY}`])).items.length === 0 ? true : undefined));
  await endpointsSettled();
  const after = await mailForShares(label, 100);
  expect(after.relayed[CANARY]).toBe(0);
  expect(after.relayed[RELEASE]).toBe(after.verdict.accepted);
  expect(after.verdict.lost).toBe(0);
}

describe.sequential('5. the gradual rollout through scripts/deploy-aws-production.sh', () => {
  let dir: string;
  let repo: string;
  let calls: string;
  let env: NodeJS.ProcessEnv;
  let image: string;
  let fillStatus: NodeJS.Timeout | undefined;

  const deploy = (args: string[]) =>
    runUnchecked(join(repo, 'scripts/deploy-aws-production.sh'), [...args, '--yes', '--min-soak', '0', '--values', VALUES, '--values', ROLLOUT_VALUES], { env, cwd: repo, timeoutMs: 600_000 });
  const deployOk = async (args: string[]) => {
    const started = Date.now();
    const result = await deploy(args);
    expect(result.code, `deploy-aws-production.sh ${args.join(' ')}:\n${result.stderr}`).toBe(0);
    report(`deploy-aws-production.sh ${args.join(' ')}: done in ${Math.round((Date.now() - started) / 1000)} s`);
    return result;
  };
  /** rollout PERCENT, then 450 messages on as many connections: nothing lost, the canary's share of them as its pods'. */
  const canaryStep = async (percent: string, canaryPods: number) => {
    const result = await deployOk(['rollout', percent]);
    await waitFor(`${canaryPods} canary pod(s) Ready`, async () => ((await readyCount(CANARY)) === canaryPods ? true : undefined));
    await endpointsSettled();
    const { verdict, relayed } = await mailForShares(`rollout ${percent}`, 450);
    expect(verdict.lost).toBe(0);
    expect(verdict.duplicated).toBe(0);
    expectShare(relayed, canaryPods, 2);
    return result;
  };
  const recorded = () => readFileSync(calls, 'utf8').split('\n').filter(Boolean);

  beforeAll(async () => {
    const archive = process.env.CLUSTER_IMAGE_ARCHIVE;
    const built = process.env.CLUSTER_IMAGE;
    if (!archive || !built) throw new Error('CLUSTER_IMAGE and CLUSTER_IMAGE_ARCHIVE are not set: run this suite with make test-cluster');
    dir = join(work, 'rollout');
    repo = join(dir, 'repo');
    calls = join(dir, 'calls.log');
    mkdirSync(dir, { recursive: true });
    writeFileSync(calls, '');
    const kubeconfig = join(dir, 'kubeconfig');
    copyFileSync(kube.env.KUBECONFIG, kubeconfig);
    writeStandIns(join(dir, 'bin'), calls, kubeconfig);
    await run('git', ['clone', '--quiet', '--shared', REPO_ROOT, repo]);
    const revision = (await run('git', ['-C', repo, 'rev-parse', '--short=12', 'HEAD'])).trim();
    image = `${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/smtp-gateway:${revision}`;
    await run(join(REPO_ROOT, 'scripts/test-cluster.sh'), ['import', join(REPO_ROOT, archive), built, image], { timeoutMs: 300_000 });
    env = {
      ...kube.childEnv,
      KUBECONFIG: kubeconfig,
      PATH: [join(dir, 'bin'), dirname(kube.env.KUBECTL), join(REPO_ROOT, '.tools/bin'), process.env.PATH].join(':'),
      HELM_TIMEOUT: '4m',
    };

    // The AWS Load Balancer Controller's stand-in: Available, its webhook Service with a ready endpoint.
    await kube.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1', kind: 'List', items: [
          {
            apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'aws-load-balancer-controller', namespace: 'kube-system' },
            spec: {
              replicas: 1, selector: { matchLabels: { app: 'lbc-stand-in' } },
              template: {
                metadata: { labels: { app: 'lbc-stand-in' } },
                spec: {
                  automountServiceAccountToken: false,
                  containers: [{ name: 'stand-in', image: kube.env.BUSYBOX_IMAGE, imagePullPolicy: 'Never', command: ['sleep', '3600'], readinessProbe: { exec: { command: ['true'] }, periodSeconds: 2 } }],
                },
              },
            },
          },
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'aws-load-balancer-webhook-service', namespace: 'kube-system' }, spec: { selector: { app: 'lbc-stand-in' }, ports: [{ port: 443, targetPort: 9443 }] } },
        ],
      }),
    });
    await run(kube.env.KUBECTL, ['-n', 'kube-system', 'rollout', 'status', 'deployment/aws-load-balancer-controller', '--timeout=120s'], { env: kube.childEnv, timeoutMs: 150_000 });
    // The controller's other half: every LoadBalancer Service of the namespace gets its NLB host name.
    let filling = false;
    fillStatus = setInterval(() => {
      if (filling) return;
      filling = true;
      void (async () => {
        const services = await kube.json(['-n', NAMESPACE, 'get', 'services']);
        for (const service of services.items) {
          if (service.spec.type !== 'LoadBalancer' || service.status?.loadBalancer?.ingress?.length) continue;
          const hostname = `${service.metadata.name}.nlb.test-cluster.invalid`;
          await kube.kubectl(['-n', NAMESPACE, 'patch', 'service', service.metadata.name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { loadBalancer: { ingress: [{ hostname }] } } })]);
        }
      })().catch(() => undefined).finally(() => { filling = false; });
    }, 2000);

    // The stable release, as `deploy` leaves it (prod overlay), on the image built here.
    await kube.helm(['install', RELEASE, join(REPO_ROOT, 'charts/smtp-gateway'), '-n', NAMESPACE, '-f', overlay('prod'), '-f', VALUES, '-f', ROLLOUT_VALUES, '--wait', '--timeout', '4m']);
    await waitFor('2 stable pods Ready', async () => ((await readyCount(RELEASE)) === 2 ? true : undefined));
  });

  afterAll(async () => {
    if (fillStatus) clearInterval(fillStatus);
    await kube.helmUnchecked(['uninstall', CANARY, '-n', NAMESPACE, '--ignore-not-found', '--wait', '--timeout', '3m']);
    await kube.helmUnchecked(['uninstall', RELEASE, '-n', NAMESPACE, '--ignore-not-found', '--wait', '--timeout', '3m']);
    await runUnchecked(kube.env.KUBECTL, ['-n', 'kube-system', 'delete', 'deployment/aws-load-balancer-controller', 'service/aws-load-balancer-webhook-service', '--ignore-not-found', '--wait=true'], { env: kube.childEnv });
  });

  it('refuses rollout 50 and promote while no canary runs, changing nothing', async () => {
    const fifty = await deploy(['rollout', '50']);
    expect(fifty.code).toBe(1);
    expect(fifty.stderr).toContain('refusing to start a canary at 50%: no canary release smtp-gateway-canary is running');
    const promote = await deploy(['promote']);
    expect(promote.code).toBe(1);
    expect(promote.stderr).toContain("no canary release smtp-gateway-canary is running in smtp-gateway; start one with 'deploy.sh production rollout 10'");
    expect(recorded().filter((line) => line.startsWith('docker') || line.startsWith('eksctl'))).toEqual([]);
    expect(await kube.helm(['list', '-n', NAMESPACE, '-q'])).toBe(`${RELEASE}\n`);
  });

  it('rollout 10: one canary pod beside two stable ones gets about a third of the mail', async () => {
    await canaryStep('10', 1);
    const canary = await kube.json(['-n', NAMESPACE, 'get', 'deployments', '-l', `app.kubernetes.io/instance=${CANARY}`]);
    expect(canary.items[0].spec.template.spec.containers[0].image).toBe(image);
    expect(canary.items[0].metadata.annotations['smtp-gateway/rollout-step']).toBe('10');
    // What the script did with the stand-ins: the image built from gateway/Dockerfile and pushed under its revision.
    const lines = recorded();
    expect(lines).toContain(`aws eks update-kubeconfig --name smtp-gateway-prod --region us-east-1 --alias smtp-gateway-prod`);
    expect(lines.filter((line) => line.startsWith('docker build'))).toEqual([expect.stringMatching(new RegExp(`^docker build --file ${repo}/gateway/Dockerfile --platform linux/amd64 .* --tag ${image.replace(/\./g, '\\.')} ${repo}$`))]);
    expect(lines.filter((line) => line.startsWith('docker push'))).toEqual([`docker push ${image}`]);
    expect(lines.filter((line) => line.startsWith('eksctl'))).toEqual([]);
  });

  it('rollout 50: past the canary gates, two canary pods beside two stable ones get about half', async () => {
    const result = await canaryStep('50', 2);
    expect(result.stderr).toContain('canary analysis: ');
    expect(result.stderr).toContain('soak time: no minimum (--min-soak 0)');
    // Already in ECR (the push of rollout 10): not built again.
    expect(recorded().filter((line) => line.startsWith('docker build'))).toHaveLength(1);
  });

  it('promote while mail flows (C=10): the stable release runs the canary image, the canary is gone, nothing lost', async () => {
    const verdict = await mailWhile('promote', 10, 60_000, async () => {
      await deployOk(['promote']);
    });
    const stable = await kube.json(['-n', NAMESPACE, 'get', 'deployments', '-l', `app.kubernetes.io/instance=${RELEASE}`]);
    expect(stable.items[0].spec.template.spec.containers[0].image).toBe(image);
    await expectStableAlone(verdict, 'after promote');
  });

  it('abort from a fresh rollout 10: the canary goes and the stable release takes all the mail again', async () => {
    await deployOk(['rollout', '10']);
    await waitFor('1 canary pod Ready', async () => ((await readyCount(CANARY)) === 1 ? true : undefined));
    await endpointsSettled();
    const verdict = await mailWhile('abort', 10, 40_000, async () => {
      await deployOk(['abort']);
    });
    await expectStableAlone(verdict, 'after abort');
    const lines = recorded();
    report(`stand-ins called ${lines.length} times: ${[...new Set(lines.map((line) => line.split(' ').slice(0, 2).join(' ')))].join(', ')}`);
    expect(lines.filter((line) => line.startsWith('eksctl'))).toEqual([]);
  });
});
