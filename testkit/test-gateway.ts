/**
 * The gateway started in-process for a test: loopback, ephemeral ports, short
 * timeouts and no drain delay, relaying to a given upstream port. Its JSON log
 * lines are captured so tests can assert what was (and was not) logged.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { afterAll } from 'vitest';
import { validateConfig } from '../gateway/src/config/load';
import type { GatewayConfig, GatewayConfigInput } from '../gateway/src/config/schema';
import { startGateway, type Gateway } from '../gateway/src/gateway';
import { createLogger } from '../gateway/src/ops/logger';

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

export interface TestGatewayOptions extends DeepPartial<GatewayConfigInput> {
  /** Port of the upstream to relay to (security none); leave out to set upstream.* yourself. */
  readonly upstreamPort?: number;
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly config: GatewayConfig;
  readonly relayPort: number;
  readonly submissionPort?: number;
  readonly smtpsPort?: number;
  readonly opsPort: number;
  /** Parsed JSON log lines so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Raw log text so far (to assert that something never appears). */
  logText(): string;
  /** The Prometheus exposition text. */
  metricsText(): Promise<string>;
  /** Bytes of received messages the gateway holds in its spool now (memory and disk). */
  spooledBytes(): Promise<number>;
  close(): Promise<void>;
}

// one folder per test file (vitest imports this module afresh for each), removed after its last test
const SPOOL_ROOT = join(tmpdir(), `gateway-spool-${randomUUID()}`);
let spools = 0;
afterAll(() => rmSync(SPOOL_ROOT, { recursive: true, force: true }));

/** A spool folder of its own for each test gateway (a gateway empties its spool folder at start-up); the gateway creates it. */
export function testSpoolDir(): string {
  spools += 1;
  return join(SPOOL_ROOT, String(spools));
}

export function testConfig(options: TestGatewayOptions = {}): GatewayConfig {
  const { upstreamPort, ...overrides } = options;
  const base: GatewayConfigInput = {
    listenAddress: '127.0.0.1',
    hostname: 'gateway.test',
    listeners: { relay: { enabled: true, port: 0 }, submission: { port: 0 }, smtps: { port: 0 } },
    ops: { listenAddress: '127.0.0.1', port: 0 },
    upstream: {
      host: '127.0.0.1',
      port: upstreamPort ?? 1,
      security: 'none',
      connectionTimeoutMs: 2000,
      socketTimeoutMs: 3000,
    },
    drain: { delaySeconds: 0, graceSeconds: 5 },
    log: { level: 'debug' },
    spool: { dir: overrides.spool?.dir ?? testSpoolDir() },
  };
  const config = validateConfig(merge(base, overrides));
  return config;
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const config = testConfig(options);
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      if (process.env.GATEWAY_TEST_LOGS) process.stderr.write(chunk);
      callback();
    },
  });
  const logger = createLogger({ level: config.log.level, stream, base: { service: 'smtp-gateway' } });
  const registry = new Registry();
  const gateway = await startGateway(config, { logger, registry });
  return {
    gateway,
    config,
    relayPort: gateway.addresses.relay?.port ?? 0,
    submissionPort: gateway.addresses.submission?.port,
    smtpsPort: gateway.addresses.smtps?.port,
    opsPort: gateway.addresses.ops.port,
    get logs() {
      return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    logText: () => lines.join('\n'),
    metricsText: () => registry.metrics(),
    spooledBytes: async () => {
      const lines = (await registry.metrics()).match(/^smtp_gateway_spool_bytes\{[^}]*\} \d+$/gm) ?? [];
      return lines.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    },
    close: async () => {
      await gateway.close();
      // only a folder this helper made: a test that names its own spool checks and removes it itself
      if (!options.spool?.dir) rmSync(config.spool.dir, { recursive: true, force: true });
    },
  };
}

type Plain = Record<string, unknown>;
const isPlain = (value: unknown): value is Plain => Boolean(value) && typeof value === 'object' && !Array.isArray(value);

function merge(base: unknown, override: unknown): unknown {
  if (!isPlain(base) || !isPlain(override)) return override === undefined ? base : override;
  const out: Plain = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = merge(base[key], value);
  return out;
}
