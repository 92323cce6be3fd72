/**
 * The image's runtime stage, reproduced without Docker: the build stage compiles only what the Dockerfile
 * copies from the context; the runtime folder gets `npm ci --omit=dev` from package.json and the lock file
 * and the compiled dist/ only; the tree is made read-only and the gateway started from it with the
 * Dockerfile's own ENTRYPOINT, ENV and WORKDIR layout, as uid/gid 10001 when the test runs as root (as in
 * the pod). Then one message is relayed end to end over loopback with nodemailer to a real smtp-server
 * upstream, and SIGTERM must drain and exit 0 with node as the process that received it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_AS_GROUP, RUN_AS_USER } from '../../gateway/src/config/constants';
import type { GatewayConfigInput } from '../../gateway/src/config/schema';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { entrypoint, imageEnv } from './helpers/dockerfile';
import { REPO_ROOT } from './helpers/repo';

/** Files the build stage copies from the build context (COPY without --from), in build-stage order. */
const BUILD_CONTEXT = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'gateway/src'];

const asRoot = process.getuid?.() === 0;
let work: string;
let app: string;
let upstream: RecordingUpstream;

function sh(command: string, args: string[], cwd: string, timeoutMs: number) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd} (exit ${result.status}):\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

function makeReadOnly(path: string) {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) return;
  if (stat.isSymbolicLink()) return;
  if (stat.isDirectory()) for (const entry of readdirSync(path)) makeReadOnly(join(path, entry));
  chmodSync(path, stat.mode & ~0o222);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'smtpgw-image-'));
  // Other users (uid 10001) must be able to reach the runtime folder, as in the image.
  chmodSync(work, 0o755);

  // Build stage: only the files the Dockerfile copies; the repository's node_modules stands in for the
  // stage's own `npm ci`, which would install the same locked versions.
  const build = join(work, 'build');
  for (const path of BUILD_CONTEXT) {
    cpSync(join(REPO_ROOT, path), join(build, path), { recursive: true, filter: (src) => !src.endsWith('.test.ts') });
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(build, 'node_modules'));
  sh(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], build, 120_000);

  // Runtime stage: production dependencies from the lock file, then dist/ and nothing else.
  app = join(work, 'app');
  mkdirSync(app);
  for (const file of ['package.json', 'package-lock.json']) cpSync(join(REPO_ROOT, file), join(app, file));
  sh('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], app, 180_000);
  cpSync(join(build, 'dist'), join(app, 'dist'), { recursive: true });
  makeReadOnly(app);

  upstream = await startRecordingUpstream();
}, 300_000);

afterAll(async () => {
  await upstream?.close();
  if (work) {
    spawnSync('chmod', ['-R', 'u+w', work]);
    rmSync(work, { recursive: true, force: true });
  }
});

interface Started {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  relayPort: number;
  opsPort: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start the gateway as the container would and wait for its relay and ops listeners. */
async function startFromRuntimeTree(config: GatewayConfigInput): Promise<Started> {
  const etc = join(work, `etc-${Date.now()}`);
  mkdirSync(etc);
  // The pod's own writable spool folder (the chart mounts an emptyDir there), not one shared on this host.
  const spool = join(work, `spool-${Date.now()}`);
  mkdirSync(spool, { mode: 0o700 });
  if (asRoot) chownSync(spool, RUN_AS_USER, RUN_AS_GROUP);
  const configFile = join(etc, 'config.yaml');
  writeFileSync(configFile, stringify({ ...config, spool: { dir: spool, ...config.spool } }));
  makeReadOnly(etc);
  chmodSync(etc, 0o555);

  const [command, ...args] = entrypoint;
  const child = spawn(command === 'node' ? process.execPath : command, args, {
    cwd: app,
    env: { PATH: process.env.PATH, ...imageEnv, SMTPGW_CONFIG: configFile },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asRoot ? { uid: RUN_AS_USER, gid: RUN_AS_GROUP } : {}),
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ports = await new Promise<{ relay: number; ops: number }>((resolve, reject) => {
    const found: Record<string, number> = {};
    const timer = setTimeout(() => reject(new Error(`gateway did not start within 15 s; stderr: ${stderr}; log: ${JSON.stringify(lines)}`)), 15_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (entry.msg === 'listening') found[String(entry.listener)] = Number(entry.port);
      } catch {
        lines.push({ unparsed: line });
      }
      if (found.relay && found.ops) {
        clearTimeout(timer);
        resolve({ relay: found.relay, ops: found.ops });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) before listening; stderr: ${stderr}; log: ${JSON.stringify(lines)}`));
    });
  });
  return { child, lines, relayPort: ports.relay, opsPort: ports.ops, exited };
}

describe('the runtime stage (no Docker)', () => {
  it('holds production dependencies and compiled code only, read-only', () => {
    expect(existsSync(join(app, 'dist/gateway/src/main.js'))).toBe(true);
    expect(existsSync(join(app, entrypoint[1]))).toBe(true);
    expect(existsSync(join(app, 'gateway'))).toBe(false);
    for (const dev of ['typescript', 'vitest', 'cdk8s', 'tsx']) expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
    for (const dep of ['smtp-server', 'nodemailer', 'zod', 'yaml', 'prom-client']) expect(existsSync(join(app, 'node_modules', dep)), dep).toBe(true);
    const writable = spawnSync('find', [app, '-perm', '/222', '-not', '-type', 'l'], { encoding: 'utf8' }).stdout.trim();
    expect(writable).toBe('');
  });

  it('relays one message end to end, then drains and exits 0 on SIGTERM', async () => {
    const gateway = await startFromRuntimeTree({
      listenAddress: '127.0.0.1',
      hostname: 'gateway.image.test',
      listeners: { relay: { enabled: true, port: 0 } },
      ops: { listenAddress: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: upstream.port, security: 'none', connectionTimeoutMs: 2000, socketTimeoutMs: 5000 },
      drain: { delaySeconds: 0, graceSeconds: 5 },
    });
    try {
      if (asRoot) {
        const status = readFileSync(`/proc/${gateway.child.pid}/status`, 'utf8');
        expect(status).toMatch(new RegExp(`^Uid:\\s+${RUN_AS_USER}\\s`, 'm'));
        expect(status).toMatch(new RegExp(`^Gid:\\s+${RUN_AS_GROUP}\\s`, 'm'));
      }
      const ready = await fetch(`http://127.0.0.1:${gateway.opsPort}/readyz`);
      expect(ready.status).toBe(200);

      const token = `image-runtime-${process.pid}-${Date.now()}`;
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: gateway.relayPort, secure: false, ignoreTLS: true });
      const info = await transport.sendMail({
        from: 'app@example.com',
        to: 'someone@example.net',
        subject: 'runtime stage check',
        text: `sent through the gateway started from the read-only runtime tree: ${token}`,
      });
      transport.close();
      expect(info.response).toMatch(/^250 /);
      expect(info.accepted).toEqual(['someone@example.net']);
      expect(upstream.messages).toHaveLength(1);
      const [received] = upstream.messages;
      expect(received.from).toBe('app@example.com');
      expect(received.to).toEqual(['someone@example.net']);
      expect(received.raw.toString()).toContain(token);
      expect(received.raw.toString()).toMatch(/^Subject: runtime stage check$/im);
    } finally {
      gateway.child.kill('SIGTERM');
    }
    const exit = await gateway.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(gateway.lines.some((l) => l.msg === 'signal received, draining' && l.signal === 'SIGTERM')).toBe(true);
  }, 30_000);
});
