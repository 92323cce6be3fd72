/**
 * Haraka as the benchmark's peer: the same sink, the same client, side by side
 * with the gateway. Configured as a plain relay (the `relay` plugin's ACL for
 * loopback, `queue/smtp_forward` to the sink, outbound through smtp_forward), so
 * like the gateway it answers the client's dot with the upstream's reply.
 * One process (`nodes=0`), as the gateway is; logging at warn. The reverse DNS
 * look-up Haraka makes for every connection is answered by a one-line plugin:
 * this machine has no DNS, and the gateway makes no such look-up either.
 * Installed by scripts/install-haraka.sh.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './gateway-process';
import { freePort, waitForPort } from '../../testkit/ports';

export const HARAKA_VERSION = '3.3.4';
export const HARAKA_BIN = join(REPO_ROOT, `.tools/haraka-${HARAKA_VERSION}/node_modules/.bin/haraka`);

export interface HarakaPeer {
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface HarakaOptions {
  readonly upstream: { readonly host: string; readonly port: number };
  /** Most simultaneous client connections Haraka accepts. @default 1200 */
  readonly maxConnections?: number;
}

export async function startHaraka(options: HarakaOptions): Promise<HarakaPeer> {
  if (!existsSync(HARAKA_BIN)) throw new Error(`Haraka ${HARAKA_VERSION} is not installed at ${HARAKA_BIN}: run scripts/install-haraka.sh (make bench does)`);
  const dir = await mkdtemp(join(tmpdir(), 'bench-haraka-'));
  const host = '127.0.0.1';
  const port = await freePort();
  const files: Record<string, string> = {
    'smtp.ini': `listen=${host}:${port}\nnodes=0\ninactivity_timeout=300\n`,
    'plugins': 'bench_rdns\nrelay\nqueue/smtp_forward\n',
    'relay.ini': '[relay]\nacl=true\n',
    'relay_acl_allow': '127.0.0.0/8\n',
    'smtp_forward.ini': `host=${options.upstream.host}\nport=${options.upstream.port}\nenable_outbound=true\n`,
    'log.ini': '[main]\nlevel=warn\nformat=default\n',
    'me': 'haraka.bench.test\n',
  };
  await mkdir(join(dir, 'config'));
  await mkdir(join(dir, 'plugins'));
  await Promise.all(Object.entries(files).map(([name, text]) => writeFile(join(dir, 'config', name), text)));
  // Haraka reads its connection settings (greeting, limits) from this file and has no defaults without it.
  await copyFile(join(HARAKA_BIN, '../../Haraka/config/connection.ini'), join(dir, 'config', 'connection.ini'));
  await writeFile(join(dir, 'plugins', 'bench_rdns.js'), "exports.hook_lookup_rdns = (next) => next(OK, 'client.bench.test');\n");
  const child: ChildProcess = spawn(HARAKA_BIN, ['-c', dir], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HARAKA_LOGS_SUPPRESS: '1' } });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
  await waitForPort(host, port, 30_000).catch((error: Error) => {
    child.kill('SIGKILL');
    throw new Error(`Haraka did not start on ${host}:${port}: ${error.message} ${stderr}`);
  });
  return {
    pid: child.pid!,
    host,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
