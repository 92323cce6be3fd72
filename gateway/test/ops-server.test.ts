import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { OPS_PATHS } from '../src/config/constants';
import { DrainController } from '../src/ops/drain';
import { createLogger } from '../src/ops/logger';
import { createMetrics } from '../src/ops/metrics';
import { startOpsServer, type OpsServer } from '../src/ops/ops-server';
import { LineSink } from './ops-support';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One raw HTTP/1.1 request over loopback, so methods and headers are exactly what we send. */
function http(port: number, method: string, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const servers: OpsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(overrides: Partial<Parameters<typeof startOpsServer>[0]> = {}) {
  const metrics = createMetrics(new Registry());
  const state = { ready: true, live: true };
  const sink = new LineSink();
  const server = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    registry: metrics.registry,
    isReady: () => state.ready,
    isLive: () => state.live,
    logger: createLogger({ level: 'debug', stream: sink }),
    ...overrides,
  });
  servers.push(server);
  return { server, state, metrics, sink };
}

describe('startOpsServer', () => {
  it('listens on an ephemeral port and serves the three paths from OPS_PATHS', async () => {
    const { server } = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(OPS_PATHS).toEqual({ metrics: '/metrics', liveness: '/healthz', readiness: '/readyz' });
    const [metrics, health, ready] = await Promise.all([
      http(server.port, 'GET', OPS_PATHS.metrics),
      http(server.port, 'GET', OPS_PATHS.liveness),
      http(server.port, 'GET', OPS_PATHS.readiness),
    ]);
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(metrics.body).toContain('# TYPE smtp_gateway_ready gauge');
    expect(metrics.body).toContain('process_cpu_seconds_total');
    expect(health).toMatchObject({ status: 200, body: 'ok' });
    expect(ready).toMatchObject({ status: 200, body: 'ready' });
    for (const reply of [metrics, health, ready]) {
      expect(reply.headers.connection).toBe('close');
      expect(reply.headers['cache-control']).toBe('no-store');
    }
  });

  it('/readyz follows isReady(): 503 "draining" while it is false, 200 again when true', async () => {
    const { server, state } = await start();
    state.ready = false;
    expect(await http(server.port, 'GET', '/readyz')).toMatchObject({ status: 503, body: 'draining' });
    // Liveness is independent of readiness: a draining pod must not be restarted.
    expect(await http(server.port, 'GET', '/healthz')).toMatchObject({ status: 200, body: 'ok' });
    state.ready = true;
    expect(await http(server.port, 'GET', '/readyz')).toMatchObject({ status: 200, body: 'ready' });
  });

  it('wired to a DrainController, /readyz and smtp_gateway_ready turn false the moment draining starts', async () => {
    const drain = new DrainController();
    const metrics = createMetrics(new Registry());
    let listening = false;
    const isReady = () => listening && !drain.draining;
    metrics.setReadySource(isReady);
    const server = await startOpsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, isReady });
    servers.push(server);
    const readyMetric = async () => /^smtp_gateway_ready (\d)$/m.exec((await http(server.port, 'GET', '/metrics')).body)?.[1];

    expect(await http(server.port, 'GET', '/readyz')).toMatchObject({ status: 503, body: 'draining' });
    expect(await readyMetric()).toBe('0');
    listening = true;
    expect(await http(server.port, 'GET', '/readyz')).toMatchObject({ status: 200, body: 'ready' });
    expect(await readyMetric()).toBe('1');

    const inFlight = drain.enter();
    drain.start();
    // No delay: the load balancer must see "not ready" before the listeners close.
    expect(await http(server.port, 'GET', '/readyz')).toMatchObject({ status: 503, body: 'draining' });
    expect(await readyMetric()).toBe('0');
    expect(await http(server.port, 'GET', '/healthz')).toMatchObject({ status: 200, body: 'ok' });
    const idle = drain.idle(5_000);
    inFlight();
    expect(await idle).toBe(true);
  });

  it('/healthz is 503 while isLive() is false, and 200 when isLive is not given', async () => {
    const { server, state } = await start();
    state.live = false;
    expect(await http(server.port, 'GET', '/healthz')).toMatchObject({ status: 503, body: 'unhealthy' });
    const plain = await start({ isLive: undefined });
    expect(await http(plain.server.port, 'GET', '/healthz')).toMatchObject({ status: 200, body: 'ok' });
  });

  it('a probe callback that throws answers 503 and logs, it does not hang or 500', async () => {
    const { server, sink } = await start({
      isReady: () => {
        throw new Error('state unavailable');
      },
    });
    expect(await http(server.port, 'GET', '/readyz')).toMatchObject({ status: 503, body: 'draining' });
    expect(sink.lines).toContainEqual(expect.objectContaining({ level: 'error', msg: 'ops server: isReady() threw', err: expect.objectContaining({ message: 'state unavailable' }) }));
  });

  it('HEAD answers the same status and headers with no body', async () => {
    const { server, state } = await start();
    const get = await http(server.port, 'GET', '/metrics');
    const head = await http(server.port, 'HEAD', '/metrics');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-type']).toBe(get.headers['content-type']);
    expect(Number(head.headers['content-length'])).toBeGreaterThan(1000);
    state.ready = false;
    expect(await http(server.port, 'HEAD', '/readyz')).toMatchObject({ status: 503, body: '' });
    expect(await http(server.port, 'HEAD', '/healthz')).toMatchObject({ status: 200, body: '', headers: expect.objectContaining({ 'content-length': '2' }) });
  });

  it('ignores the query string', async () => {
    const { server } = await start();
    expect(await http(server.port, 'GET', '/healthz?probe=kubelet')).toMatchObject({ status: 200, body: 'ok' });
  });

  it('404 for any other path, 405 with Allow for other methods', async () => {
    const { server } = await start();
    for (const path of ['/', '/metrics/', '/health', '/readyz/x', '/constructor', '/__proto__']) {
      expect(await http(server.port, 'GET', path), path).toMatchObject({ status: 404, body: 'not found' });
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const reply = await http(server.port, method, '/metrics');
      expect(reply, method).toMatchObject({ status: 405, body: 'method not allowed' });
      expect(reply.headers.allow).toBe('GET, HEAD');
    }
  });

  it('serves the metrics of its own registry, including values set after start', async () => {
    const a = await start();
    const b = await start();
    a.metrics.ready.set(1);
    a.metrics.connections.inc({ listener: 'relay' }, 3);
    const [bodyA, bodyB] = await Promise.all([http(a.server.port, 'GET', '/metrics'), http(b.server.port, 'GET', '/metrics')]);
    expect(bodyA.body).toMatch(/^smtp_gateway_ready 1$/m);
    expect(bodyA.body).toMatch(/^smtp_gateway_connections_total\{listener="relay"\} 3$/m);
    expect(bodyB.body).toMatch(/^smtp_gateway_ready 0$/m);
    expect(bodyB.body).toMatch(/^smtp_gateway_connections_total\{listener="relay"\} 0$/m);
  });

  it('answers 500 and logs when collecting metrics fails', async () => {
    const { server, metrics, sink } = await start();
    const { Gauge } = await import('prom-client');
    new Gauge({
      name: 'test_broken_collector',
      help: 'A collector that fails, as a bug in one would.',
      registers: [metrics.registry],
      collect() {
        throw new Error('collector broke');
      },
    });
    expect(await http(server.port, 'GET', '/metrics')).toMatchObject({ status: 500, body: 'internal error' });
    expect(await http(server.port, 'GET', '/healthz')).toMatchObject({ status: 200 });
    expect(sink.lines).toContainEqual(expect.objectContaining({ level: 'error', msg: 'ops request failed', path: '/metrics' }));
  });

  it('close() returns promptly even with an idle client connection open, and frees the port', async () => {
    const { server } = await start();
    const { Socket } = await import('node:net');
    const idle = new Socket();
    await new Promise<void>((resolve, reject) => idle.connect(server.port, '127.0.0.1', resolve).once('error', reject));
    // Half a request: the server holds this socket until it is closed.
    idle.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    const closed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
    const started = Date.now();
    await server.close();
    await closed;
    expect(Date.now() - started).toBeLessThan(2_000);
    await server.close(); // a second close is harmless
    await expect(http(server.port, 'GET', '/healthz')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('rejects with the address and the reason when the port is taken', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(start({ port })).rejects.toThrow(`ops server: cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
