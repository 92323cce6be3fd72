/**
 * The gateway as a separate process, started the way a pod starts it: a YAML
 * file named by SMTPGW_CONFIG, JSON logs on stdout. Keeping it out of the test's
 * own process is what lets the benchmark read its CPU and memory from /proc,
 * and lets the fault suites see whether it crashed and how it exits on SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { GatewayConfigInput } from '../../gateway/src/config/schema';
import { freePort } from '../../testkit/ports';
import { ENV, NODE_OPTIONS } from '../../gateway/src/config/constants';

export const REPO_ROOT = resolve(__dirname, '../..');
const DIST_MAIN = join(REPO_ROOT, 'dist/gateway/src/main.js');
const SOURCE_MAIN = join(REPO_ROOT, 'gateway/src/main.ts');

export interface GatewayProcessOptions {
  readonly config: GatewayConfigInput;
  /** 'dist' runs the compiled JavaScript as the image does; 'tsx' the sources. @default 'dist' when built, else 'tsx' */
  readonly runtime?: 'dist' | 'tsx';
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[];
  /** Wait this long for the listeners (their "listening" lines are logged at info). @default 20000 */
  readonly startTimeoutMs?: number;
  /** Working directory. @default the repository root (so `--import tsx` resolves) */
  readonly cwd?: string;
  /** Open the inspector on loopback so collectGarbage() can force a full GC (memory tests). @default false */
  readonly inspect?: boolean;
}

export interface GatewayProcess {
  readonly pid: number;
  /** Port of each SMTP listener that logged "listening", by listener name. */
  readonly ports: Record<string, number>;
  readonly opsPort: number;
  readonly logFile: string;
  /** Parsed JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  /** Exit code and signal once it has exited, else undefined. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Resolves with how the process ended. */
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(signal: NodeJS.Signals): void;
  /** GET a path on the ops port; status and body. */
  ops(path: string): Promise<{ status: number; body: string }>;
  /** Sum of every sample of a metric on /metrics (all label sets). */
  metric(name: string): Promise<number>;
  /** Waits (up to `timeoutMs`) until no SMTP connection is open; returns how many still are. */
  connectionsSettle(timeoutMs?: number): Promise<number>;
  /** Forces a full garbage collection through the inspector (needs `inspect: true`). */
  collectGarbage(): Promise<void>;
  /** SIGTERM, wait, SIGKILL if it will not go; removes the temp folder. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function gatewayRuntime(): 'dist' | 'tsx' {
  return existsSync(DIST_MAIN) ? 'dist' : 'tsx';
}

export async function startGatewayProcess(options: GatewayProcessOptions): Promise<GatewayProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-gateway-'));
  const configFile = join(dir, 'config.yaml');
  const logFile = join(dir, 'gateway.log');
  // each process its own spool: a gateway removes what it finds in its spool folder at start-up
  const config = { ...options.config, spool: { dir: join(dir, 'spool'), ...options.config.spool } };
  await writeFile(configFile, stringify(await withConcretePorts(config)));
  const runtime = options.runtime ?? gatewayRuntime();
  const args = [...(options.nodeArgs ?? []), ...(options.inspect ? ['--inspect=127.0.0.1:0'] : []), ...(runtime === 'tsx' ? ['--import', 'tsx', SOURCE_MAIN] : [DIST_MAIN])];
  // Logs go to a file, not a pipe: reading thousands of lines a second would tax the benchmark's own process.
  const out = openSync(logFile, 'a');
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: options.cwd ?? REPO_ROOT,
    // the image's runtime flags, so what is measured is what ships
    env: { ...process.env, NODE_OPTIONS, [ENV.configFile]: configFile, NODE_PATH: join(REPO_ROOT, 'node_modules') },
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  // A test or run that dies without stop() must not leave a gateway behind.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolveExit(exit);
    }),
  );

  let parsedUpTo = 0;
  const parsed: Array<Record<string, unknown>> = [];
  const logs = () => {
    let text: string;
    try {
      text = readFileSync(logFile, 'utf8');
    } catch {
      return parsed; // removed by stop()
    }
    const end = text.lastIndexOf('\n') + 1;
    for (const line of text.slice(parsedUpTo, end).split('\n')) {
      if (!line) continue;
      try {
        parsed.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        parsed.push({ msg: 'unparsed', line });
      }
    }
    parsedUpTo = end;
    return parsed;
  };

  const ports: Record<string, number> = {};
  let opsPort = 0;
  const wanted = Object.entries(options.config.listeners ?? { relay: {} })
    .filter(([, listener]) => listener?.enabled ?? true)
    .map(([name]) => name);
  const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
  for (;;) {
    for (const line of logs()) {
      if (line.msg !== 'listening') continue;
      if (line.listener === 'ops') opsPort = Number(line.port);
      else ports[String(line.listener)] = Number(line.port);
    }
    if (opsPort && wanted.every((name) => ports[name])) break;
    if (exit || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `gateway did not start (${exit ? `exited ${exit.code ?? exit.signal}` : 'timed out'}); log:\n${readFileSync(logFile, 'utf8').slice(-4000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const waitExit = (timeoutMs = 60_000) =>
    Promise.race([
      exitPromise,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`gateway ${child.pid} still running after ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);

  const ops = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${opsPort}${path}`);
    return { status: response.status, body: await response.text() };
  };
  const metric = async (name: string) => {
    const { body } = await ops('/metrics');
    return body
      .split('\n')
      .filter((line) => line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{'))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  };

  return {
    pid: child.pid ?? 0,
    ports,
    opsPort,
    logFile,
    logs,
    exited: () => exit,
    waitExit,
    signal: (signal) => child.kill(signal),
    ops,
    metric,
    async collectGarbage() {
      const url = /Debugger listening on (ws:\/\/\S+)/.exec(String(logs().find((line) => /Debugger listening/.test(String(line.line)))?.line))?.[1];
      if (!url) throw new Error('collectGarbage() needs a gateway started with inspect: true');
      await collectGarbageAt(url);
    },
    async connectionsSettle(timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      let open = await metric('smtp_gateway_connections_open');
      while (open > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        open = await metric('smtp_gateway_connections_open');
      }
      return open;
    },
    async stop(timeoutMs = 30_000) {
      if (!exit) child.kill('SIGTERM');
      const result = await waitExit(timeoutMs).catch(async () => {
        child.kill('SIGKILL');
        return exitPromise;
      });
      await rm(dir, { recursive: true, force: true });
      return result;
    },
  };
}

/** The settings every bench and fault run shares: production defaults except where loopback needs otherwise. */
export function benchGatewayConfig(upstream: { host: string; port: number }, overrides: GatewayConfigInput = {}): GatewayConfigInput {
  return merge(
    {
      hostname: 'gateway.bench.test',
      listenAddress: '127.0.0.1',
      listeners: { relay: { enabled: true, port: 0 }, submission: { enabled: false }, smtps: { enabled: false } },
      ops: { listenAddress: '127.0.0.1', port: 0 },
      upstream: { host: upstream.host, port: upstream.port, security: 'none' },
      drain: { delaySeconds: 0, graceSeconds: 30 },
    },
    overrides,
  ) as GatewayConfigInput;
}

/** Overrides that open the implicit-TLS listener (and STARTTLS) with the given certificate. */
export function tlsOverrides(certs: { certFile: string; keyFile: string }, more: GatewayConfigInput = {}): GatewayConfigInput {
  return merge({ listeners: { smtps: { enabled: true, port: 0 } }, tls: { certFile: certs.certFile, keyFile: certs.keyFile } }, more) as GatewayConfigInput;
}

function merge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current)
        ? merge(current as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

/**
 * Port 0 replaced by a port free a moment ago, for gateways whose schema wants
 * a real port; the listening log line is still what tells the port in use.
 */
async function withConcretePorts(config: GatewayConfigInput): Promise<GatewayConfigInput> {
  const copy = structuredClone(config) as { listeners?: Record<string, { port?: number } | undefined>; ops?: { port?: number } };
  for (const listener of Object.values(copy.listeners ?? {})) if (listener?.port === 0) listener.port = await freePort();
  if (copy.ops?.port === 0) copy.ops.port = await freePort();
  return copy as GatewayConfigInput;
}

/**
 * HeapProfiler.collectGarbage over the inspector's WebSocket. Node 20 has a
 * WebSocket client only behind a flag, so a one-off node process does the call.
 */
function collectGarbageAt(url: string): Promise<void> {
  const script = `
    const ws = new WebSocket(process.argv[1]);
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    ws.onmessage = (event) => { if (JSON.parse(event.data).id === 1) { ws.close(); process.exit(0); } };
    ws.onerror = () => process.exit(1);
    setTimeout(() => process.exit(2), 10000);`;
  return new Promise((resolveGc, reject) => {
    const child = spawn(process.execPath, ['--experimental-websocket', '--no-warnings', '-e', script, url], { stdio: 'ignore' });
    child.once('exit', (code) => (code === 0 ? resolveGc() : reject(new Error(`collecting garbage through ${url} failed (exit ${code})`))));
  });
}
