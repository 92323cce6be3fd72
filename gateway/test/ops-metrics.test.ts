import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { LISTENER_NAMES, OPS_PATHS } from '../src/config/constants';
import {
  LATENCY_BUCKETS_SECONDS,
  authMechanismLabel,
  createMetrics,
  upstreamReplyLabel,
  type GatewayMetrics,
} from '../src/ops/metrics';
import { startOpsServer, type OpsServer } from '../src/ops/ops-server';
import { promtool } from './ops-support';

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function scrape(metrics: GatewayMetrics): Promise<string> {
  const server: OpsServer = await startOpsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, isReady: () => true });
  cleanups.push(() => server.close());
  const res = await fetch(`http://127.0.0.1:${server.port}${OPS_PATHS.metrics}`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Families in an exposition text with the number of samples each has. */
function families(exposition: string): Map<string, { type: string; samples: number }> {
  const result = new Map<string, { type: string; samples: number }>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) result.set(type[1], { type: type[2], samples: 0 });
  }
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0];
    const family = result.get(name) ?? result.get(name.replace(/_(bucket|sum|count)$/, ''));
    if (!family) throw new Error(`sample without a family: ${line}`);
    family.samples += 1;
  }
  return result;
}

/** Every metric of the gateway used once, the way the core's call sites will. */
function touchEveryMetric(metrics: GatewayMetrics): void {
  metrics.connectionsOpen.inc({ listener: 'relay' });
  metrics.connectionsOpen.dec({ listener: 'relay' });
  metrics.connectionsOpen.inc({ listener: 'submission' }, 2);
  metrics.connections.inc({ listener: 'smtps' });
  metrics.connectionsRefused.inc({ listener: 'relay', reason: 'max_per_ip' });
  metrics.connectionsRefused.inc({ listener: 'relay', reason: 'proxy_untrusted' });
  metrics.connectionsRefused.inc({ listener: 'submission', reason: 'proxy_timeout' });
  metrics.deadlinesExpired.inc({ listener: 'relay', deadline: 'command' });
  metrics.messages.inc({ outcome: 'relayed', reason: 'ok' });
  metrics.applicationMessages.inc({ application: 'billing', outcome: 'relayed' });
  metrics.messages.inc({ outcome: 'rejected', reason: 'relay_denied' });
  metrics.messages.inc({ outcome: 'rejected', reason: 'upstream_permanent' });
  metrics.messages.inc({ outcome: 'deferred', reason: 'upstream_timeout' });
  metrics.messages.inc({ outcome: 'aborted', reason: 'client_disconnect' });
  metrics.messageBytes.inc(2048);
  metrics.messageSize.observe(2048);
  metrics.messageSize.observe(30 * 1024 * 1024);
  metrics.recipients.inc({ outcome: 'relayed' }, 3);
  metrics.recipients.inc({ outcome: 'rejected' });
  metrics.authAttempts.inc({ mechanism: authMechanismLabel('PLAIN'), result: 'success' });
  metrics.authAttempts.inc({ mechanism: 'login', result: 'failure' });
  metrics.authAttempts.inc({ mechanism: 'plain', result: 'rate_limited' });
  metrics.tlsHandshakes.inc({ listener: 'smtps', result: 'success' });
  metrics.tlsHandshakes.inc({ listener: 'relay', result: 'failure' });
  metrics.upstreamReplies.inc({ code: upstreamReplyLabel(250) });
  metrics.upstreamReplies.inc({ code: '554' });
  metrics.upstreamReplies.inc({ code: 'timeout' });
  metrics.upstreamReplies.inc({ code: 'connection_error' });
  metrics.upstreamLatency.observe(0.042);
  const endTransaction = metrics.transactionLatency.startTimer();
  endTransaction({ outcome: 'relayed' });
  metrics.transactionLatency.observe({ outcome: 'deferred' }, 30.5);
  metrics.upstreamPool.set({ state: 'idle' }, 1); // overwritten by the pool source at scrape time
  metrics.setUpstreamPoolSource(() => ({ active: 2, idle: 1, queued: 4 }));
  metrics.setSpoolSource(() => ({ memory: 4096, disk: 1048576 }));
  metrics.messages.inc({ outcome: 'deferred', reason: 'spool_full' });
  metrics.dsn.inc({ result: 'sent' });
  metrics.ready.set(1);
}

describe('createMetrics', () => {
  it('exposes every gateway metric, each touched, and promtool check metrics reports nothing', async () => {
    const metrics = createMetrics(new Registry());
    touchEveryMetric(metrics);
    const body = await scrape(metrics);

    const found = families(body);
    const gatewayFamilies = [...found].filter(([name]) => name.startsWith('smtp_gateway_'));
    expect(gatewayFamilies.map(([name]) => name).sort()).toEqual([
      'smtp_gateway_account_share_peer_errors_total',
      'smtp_gateway_account_share_peers',
      'smtp_gateway_application_messages_total',
      'smtp_gateway_application_reloads_total',
      'smtp_gateway_auth_attempts_total',
      'smtp_gateway_build_info',
      'smtp_gateway_connections_open',
      'smtp_gateway_connections_refused_total',
      'smtp_gateway_connections_total',
      'smtp_gateway_deadlines_expired_total',
      'smtp_gateway_dsn_total',
      'smtp_gateway_message_size_bytes',
      'smtp_gateway_messages_total',
      'smtp_gateway_ready',
      'smtp_gateway_recipients_total',
      'smtp_gateway_relayed_bytes_total',
      'smtp_gateway_spool_bytes',
      'smtp_gateway_tls_handshakes_total',
      'smtp_gateway_transaction_duration_seconds',
      'smtp_gateway_upstream_credential_failures_total',
      'smtp_gateway_upstream_duration_seconds',
      'smtp_gateway_upstream_pool',
      'smtp_gateway_upstream_replies_total',
      'smtp_gateway_upstream_send_rate',
      'smtp_gateway_upstream_throttled_total',
    ]);
    for (const [name, family] of gatewayFamilies) expect(family.samples, name).toBeGreaterThan(0);
    // Node's default process metrics are there too.
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(found.has(name), name).toBe(true);
    }

    const lint = promtool(['check', 'metrics'], body);
    expect({ status: lint.status, stdout: lint.stdout, stderr: lint.stderr }).toEqual({ status: 0, stdout: '', stderr: '' });
  });

  it('promtool check metrics is a real check: it flags a badly named metric', () => {
    const lint = promtool(['check', 'metrics'], '# HELP bad_total A gauge named like a counter.\n# TYPE bad_total gauge\nbad_total 1\n');
    expect(lint.status).not.toBe(0);
    expect(lint.stdout + lint.stderr).toMatch(/bad_total non-counter metrics should not have "_total" suffix/);
  });

  it('writes the values the call sites set, with bounded label values', async () => {
    const metrics = createMetrics(new Registry(), { version: '9.9.9-test' });
    touchEveryMetric(metrics);
    const body = await scrape(metrics);
    const expected = [
      'smtp_gateway_connections_open{listener="relay"} 0',
      'smtp_gateway_connections_open{listener="submission"} 2',
      'smtp_gateway_connections_total{listener="smtps"} 1',
      'smtp_gateway_connections_refused_total{listener="relay",reason="max_per_ip"} 1',
      'smtp_gateway_messages_total{outcome="deferred",reason="upstream_timeout"} 1',
      'smtp_gateway_relayed_bytes_total 2048',
      'smtp_gateway_message_size_bytes_bucket{le="4096"} 1',
      'smtp_gateway_message_size_bytes_bucket{le="52428800"} 2',
      'smtp_gateway_message_size_bytes_count 2',
      'smtp_gateway_recipients_total{outcome="relayed"} 3',
      'smtp_gateway_auth_attempts_total{mechanism="plain",result="success"} 1',
      'smtp_gateway_tls_handshakes_total{listener="relay",result="failure"} 1',
      'smtp_gateway_upstream_replies_total{code="250"} 1',
      'smtp_gateway_upstream_replies_total{code="timeout"} 1',
      'smtp_gateway_upstream_duration_seconds_bucket{le="0.05"} 1',
      'smtp_gateway_upstream_duration_seconds_bucket{le="0.025"} 0',
      'smtp_gateway_transaction_duration_seconds_bucket{le="30",outcome="deferred"} 0',
      'smtp_gateway_transaction_duration_seconds_bucket{le="60",outcome="deferred"} 1',
      'smtp_gateway_transaction_duration_seconds_count{outcome="relayed"} 1',
      'smtp_gateway_upstream_pool{state="active"} 2',
      'smtp_gateway_upstream_pool{state="idle"} 1',
      'smtp_gateway_upstream_pool{state="queued"} 4',
      'smtp_gateway_spool_bytes{medium="memory"} 4096',
      'smtp_gateway_spool_bytes{medium="disk"} 1048576',
      'smtp_gateway_messages_total{outcome="deferred",reason="spool_full"} 1',
      'smtp_gateway_dsn_total{result="sent"} 1',
      'smtp_gateway_dsn_total{result="failed"} 0',
      'smtp_gateway_ready 1',
      'smtp_gateway_build_info{version="9.9.9-test"} 1',
    ];
    const lines = new Set(body.split('\n'));
    for (const line of expected) expect(lines.has(line), line).toBe(true);
  });

  it('starts connection series at 0 for the listeners given, and ready at 0', async () => {
    const body = await scrape(createMetrics(new Registry(), { listeners: ['submission'] }));
    expect(body).toMatch(/^smtp_gateway_connections_open\{listener="submission"\} 0$/m);
    expect(body).toMatch(/^smtp_gateway_connections_total\{listener="submission"\} 0$/m);
    expect(body).not.toContain('listener="relay"');
    expect(body).toMatch(/^smtp_gateway_ready 0$/m);
    expect(body).toMatch(/^smtp_gateway_upstream_pool\{state="queued"\} 0$/m);
    expect(body).toMatch(/^smtp_gateway_spool_bytes\{medium="disk"\} 0$/m);
    const all = await scrape(createMetrics(new Registry()));
    for (const listener of LISTENER_NAMES) expect(all).toContain(`smtp_gateway_connections_total{listener="${listener}"} 0`);
  });

  it('labels the build with the version in package.json by default', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    expect(await scrape(createMetrics(new Registry()))).toContain(`smtp_gateway_build_info{version="${version}"} 1`);
  });

  it('gives each gateway its own registry, so several can live in one process', async () => {
    const a = createMetrics();
    const b = createMetrics();
    expect(a.registry).not.toBe(b.registry);
    a.messages.inc({ outcome: 'relayed', reason: 'ok' }, 5);
    expect(await scrape(a)).toContain('smtp_gateway_messages_total{outcome="relayed",reason="ok"} 5');
    expect(await scrape(b)).not.toContain('smtp_gateway_messages_total{');
  });

  it('a pool or ready source that throws reads as an empty pool and not ready, instead of failing the scrape', async () => {
    const metrics = createMetrics(new Registry());
    metrics.ready.set(1);
    metrics.setUpstreamPoolSource(() => {
      throw new Error('transport replaced');
    });
    metrics.setReadySource(() => {
      throw new Error('state unavailable');
    });
    const body = await scrape(metrics);
    expect(body).toMatch(/^smtp_gateway_upstream_pool\{state="active"\} 0$/m);
    expect(body).toMatch(/^smtp_gateway_ready 0$/m);
  });

  it('has latency buckets from 1 ms to 60 s', () => {
    expect(LATENCY_BUCKETS_SECONDS[0]).toBe(0.001);
    expect(LATENCY_BUCKETS_SECONDS.at(-1)).toBe(60);
    expect([...LATENCY_BUCKETS_SECONDS].sort((x, y) => x - y)).toEqual(LATENCY_BUCKETS_SECONDS);
  });

  it('type-checks label values (tsc fails if a bad one compiles)', () => {
    const metrics = createMetrics(new Registry());
    // @ts-expect-error an address is not a listener
    metrics.connections.inc({ listener: '10.0.0.1' });
    // @ts-expect-error 'shutdown' is a reason for deferral, not for a relayed message
    metrics.messages.inc({ outcome: 'relayed', reason: 'shutdown' });
    // @ts-expect-error a user name is not an AUTH result
    metrics.authAttempts.inc({ mechanism: 'plain', result: 'alice@example.com' });
    // @ts-expect-error upstream free text is not a reply code
    metrics.upstreamReplies.inc({ code: '250 Ok queued as 123' });
    // @ts-expect-error every label must be given
    metrics.connectionsRefused.inc({ listener: 'relay' });
    expect(true).toBe(true);
  });
});

describe('label helpers', () => {
  it('authMechanismLabel maps the mechanisms the listeners offer, and anything else to "other"', () => {
    expect(authMechanismLabel('PLAIN')).toBe('plain');
    expect(authMechanismLabel('LOGIN')).toBe('login');
    expect(authMechanismLabel('XOAUTH2')).toBe('other');
    expect(authMechanismLabel('CRAM-MD5')).toBe('other');
    expect(authMechanismLabel('GSSAPI')).toBe('other');
    expect(authMechanismLabel(undefined)).toBe('other');
  });

  it('upstreamReplyLabel keeps final codes 200-599 and folds anything else into protocol_error', () => {
    expect(upstreamReplyLabel(250)).toBe('250');
    expect(upstreamReplyLabel('451')).toBe('451');
    expect(upstreamReplyLabel(554)).toBe('554');
    for (const bad of [undefined, null, 0, 99, 199, 600, 2500, 'abc', '25']) expect(upstreamReplyLabel(bad as never)).toBe('protocol_error');
  });
});
