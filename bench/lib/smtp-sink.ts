/**
 * Postfix's smtp-sink as the benchmark's upstream: a C program that costs
 * little CPU, so what the table shows is the gateway. It appends every
 * transaction to one dump file on tmpfs, from which the ids are read back.
 * Not for fault scenarios: it dumps a transaction as it arrives, before its dot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ID_HEADER } from './message';

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** The smtp-sink process (a new one after reset()). */
  readonly pid: number;
  /** How often each id appeared in the dump so far. */
  deliveries(): Promise<Map<string, number>>;
  /** Empties the dump (between benchmark cells). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export interface SmtpSinkOptions {
  /** Keep a dump of each message so ids can be checked. @default true */
  readonly dump?: boolean;
  /** Most simultaneous connections. @default 1024 */
  readonly maxConnections?: number;
  /** More smtp-sink options, e.g. ['-Q', 'MAIL'] to answer MAIL with 421 and hang up. @default [] */
  readonly extraArgs?: readonly string[];
}

const SINK = '/usr/sbin/smtp-sink';

export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const dir = await mkdtemp(join(process.platform === 'linux' ? '/dev/shm' : '/tmp', 'bench-sink-'));
  await chmod(dir, 0o777); // as root, smtp-sink drops to nobody before it writes
  let generation = 0;
  const dumpFile = () => join(dir, `dump-${generation}`);
  const port = await freePort();
  const host = '127.0.0.1';
  let child: ChildProcess | undefined;

  const start = async () => {
    // As root smtp-sink insists on dropping privileges (-u); as anyone else it must not be asked to.
    const args = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), '-m', String(options.maxConnections ?? 1024), '-t', '300', ...(options.extraArgs ?? [])];
    if (options.dump ?? true) args.push('-D', dumpFile());
    args.push(`${host}:${port}`, '1024');
    const proc = spawn(SINK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child = proc;
    // A test or run that dies without stop() must not leave a sink behind.
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    proc.once('exit', () => process.off('exit', reap));
    await waitForPort(host, port, 5_000).catch((error: Error) => {
      proc.kill('SIGKILL');
      throw new Error(`smtp-sink did not start on ${host}:${port}: ${error.message} ${stderr}`);
    });
  };
  const stopChild = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    await exited;
  };
  await start();

  return {
    host,
    port,
    get pid() {
      return child?.pid ?? 0;
    },
    deliveries: () => readIds(dumpFile()),
    async reset() {
      // smtp-sink keeps its dump file open; restarting it with a new file is the clean cut.
      await stopChild();
      generation += 1;
      await start();
    },
    async stop() {
      await stopChild();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function readIds(file: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const prefix = `${ID_HEADER.toLowerCase()}:`;
  const lines = createInterface({ input: createReadStream(file, { encoding: 'latin1' }), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.length > 80 || line[0] !== 'X' && line[0] !== 'x') continue;
      if (!line.toLowerCase().startsWith(prefix)) continue;
      const id = line.slice(prefix.length).trim();
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return counts;
}

/** A port that was free a moment ago (for programs that cannot listen on port 0 and tell). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
