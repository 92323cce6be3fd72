/**
 * The cluster suite's handle on the cluster scripts/test-cluster.sh runs: its addresses, and the real
 * kubectl (built by scripts/install-cluster-tools.sh) and helm (.tools/bin) pointed at it.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(__dirname, '../..');

export interface ClusterEnv {
  readonly KUBECONFIG: string;
  readonly NODE_IP: string;
  readonly NODE_NAME: string;
  readonly NODE_ZONE: string;
  /** The kwok node of `scripts/test-cluster.sh fake-node add`, in the second zone. */
  readonly FAKE_NODE_NAME: string;
  readonly FAKE_NODE_ZONE: string;
  readonly POD_CIDR: string;
  readonly SERVICE_CIDR: string;
  readonly KUBECTL: string;
  /** The image with sh that the chart's helm test runs (scripts/test-cluster.sh builds it). */
  readonly BUSYBOX_IMAGE: string;
}

function parseEnvLines(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) values[match[1]] = match[2];
  }
  return values;
}

/** KEY=value lines of scripts/cluster-versions.env. */
export function clusterVersions(): Record<string, string> {
  return parseEnvLines(readFileSync(join(REPO_ROOT, 'scripts/cluster-versions.env'), 'utf8'));
}

export async function clusterEnv(): Promise<ClusterEnv> {
  const stdout = await run(join(REPO_ROOT, 'scripts/test-cluster.sh'), ['env']);
  return parseEnvLines(stdout) as unknown as ClusterEnv;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (at most `timeoutMs`); never throws, the caller judges the exit code. */
export interface RunOptions {
  readonly input?: string;
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** @default the repository root */
  readonly cwd?: string;
}

export function runUnchecked(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((done) => {
    const child = execFile(
      command,
      args,
      { timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env, cwd: options.cwd ?? REPO_ROOT },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        done({ code, stdout: String(stdout), stderr: String(stderr) + (error && typeof error.code !== 'number' ? `\n${error.message}` : '') });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Runs a command and throws, naming it and its output, when it fails. */
export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const result = await runUnchecked(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${[command, ...args].join(' ')} exited ${result.code}:\n${result.stderr.trim() || result.stdout.trim()}`);
  }
  return result.stdout;
}

export interface Kube {
  readonly env: ClusterEnv;
  kubectl(args: readonly string[], options?: { input?: string; timeoutMs?: number }): Promise<string>;
  helm(args: readonly string[], options?: { timeoutMs?: number }): Promise<string>;
  helmUnchecked(args: readonly string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  json<T = any>(args: readonly string[]): Promise<T>;
  /** Environment for child processes (scripts) that run kubectl and helm against this cluster. */
  readonly childEnv: NodeJS.ProcessEnv;
}

export async function connect(): Promise<Kube> {
  const env = await clusterEnv();
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    KUBECONFIG: env.KUBECONFIG,
    // helm keeps its caches and repositories config per run, not in the user's home.
    HELM_CACHE_HOME: join(REPO_ROOT, '.tools/helm-home/cache'),
    HELM_CONFIG_HOME: join(REPO_ROOT, '.tools/helm-home/config'),
    HELM_DATA_HOME: join(REPO_ROOT, '.tools/helm-home/data'),
  };
  const helmBin = join(REPO_ROOT, '.tools/bin/helm');
  return {
    env,
    childEnv,
    kubectl: (args, options = {}) => run(env.KUBECTL, args, { ...options, env: childEnv }),
    helm: (args, options = {}) => run(helmBin, args, { timeoutMs: options.timeoutMs ?? 360_000, env: childEnv }),
    helmUnchecked: (args, options = {}) => runUnchecked(helmBin, args, { timeoutMs: options.timeoutMs ?? 360_000, env: childEnv }),
    json: async (args) => JSON.parse(await run(env.KUBECTL, [...args, '-o', 'json'], { env: childEnv })),
  };
}

/** Polls `check` once a second until it returns a value other than undefined, at most `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`${what}: not reached within ${timeoutMs / 1000} s${lastError ? ` (last error: ${String(lastError)})` : ''}`);
}
