/**
 * The chart, the image built from gateway/Dockerfile and real mail on a real one-node Kubernetes
 * (scripts/test-cluster.sh): install with the staging overlay, upgrade to the prod overlay while mail
 * flows, delete a pod while mail flows, roll back, two releases side by side, uninstall. Mail goes from
 * this process to the Service's ClusterIP (kube-proxy) and from the pods to a recording upstream on the
 * node's own address, with STARTTLS and AUTH as to SES. Figures go to the test output.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { check } from '../bench/lib/checker';
import { runLoad, type LoadResult } from '../bench/lib/load-generator';
import { type RecordingUpstream, startRecordingUpstream } from '../bench/lib/recording-upstream';
import { makeTestCertificates } from '../gateway/test/helpers/certs';
import { hashPassword } from '../gateway/src/smtp/auth-users';
import { connect, type Kube, REPO_ROOT, run, waitFor } from './helpers/test-cluster';

const NAMESPACE = 'smtp-gateway';
const RELEASE = 'smtp-gateway';
const SECRETS = ['smtp-gateway-credentials', 'smtp-gateway-tls'];
const UPSTREAM = { user: 'ses-smtp-user', pass: 'ses-smtp-password-e2e' };
const VALUES = join(REPO_ROOT, 'e2e/test-cluster-values.yaml');
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
    const podZones = async () => {
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
    // helm uninstall does not remove hook resources: the test pod, kept for `helm test --logs`, stays.
    const keptTestPod = `pod/${RELEASE}-test`;
    const expected = [...SECRETS.map((name) => `secret/${name}`), keptTestPod].sort();
    const leftovers = async () =>
      (await kube.kubectl(['-n', NAMESPACE, 'get', 'all,configmap,secret,serviceaccount,pdb,hpa,networkpolicy,servicemonitor,endpointslice,role,rolebinding', '-o', 'name']))
        .split('\n')
        .filter(Boolean)
        // What every namespace has.
        .filter((name) => name !== 'serviceaccount/default' && name !== 'configmap/kube-root-ca.crt')
        .sort();
    const left = await waitFor('only the Secrets and the kept test pod', async () => {
      const names = await leftovers();
      return JSON.stringify(names) === JSON.stringify(expected) ? names : undefined;
    }, 120_000).catch(async (error) => {
      throw new Error(`${String(error)}; left: ${(await leftovers()).join(', ')}`);
    });
    expect(left).toEqual(expected);
    report(`uninstall: left ${left.join(', ')} (the test pod is a helm hook, which helm uninstall keeps)`);
    await kube.kubectl(['-n', NAMESPACE, 'delete', keptTestPod, '--wait=true', '--timeout=60s']);
  });
});
