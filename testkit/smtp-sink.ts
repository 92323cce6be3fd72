/**
 * Postfix's smtp-sink as an upstream: a second, independent SMTP server
 * implementation, and a C program that costs little CPU, so what a benchmark
 * shows is the gateway. It dumps transactions as they arrive (before their
 * dot, so not for fault scenarios) to a folder on tmpfs, and its replies can be
 * switched to soft (450) or hard (500) refusals, a silent disconnect or a 421
 * and hang-up for chosen commands, e.g. "." for the final dot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort, waitForPort } from './ports';
import { ID_HEADER } from './test-message';

export interface SmtpSinkOptions {
  /**
   * How transactions are dumped: appended to one file (`one-file`, the cheapest, for benchmarks) or one file
   * each (`per-transaction`, for tests that read each message with dumps()). @default 'one-file'
   */
  readonly dump?: 'one-file' | 'per-transaction';
  /** Most simultaneous connections. @default 1024 */
  readonly maxConnections?: number;
  /** Answer these commands with 450 (e.g. ['.']). @default none */
  readonly softReject?: readonly string[];
  /** Answer these commands with 500. @default none */
  readonly hardReject?: readonly string[];
  /** Disconnect without a reply after these commands. @default none */
  readonly disconnectAfter?: readonly string[];
  /** Answer these commands with 421 and hang up (e.g. ['MAIL']). @default none */
  readonly hangUpAfter?: readonly string[];
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** The smtp-sink process (a new one after reset()). */
  readonly pid: number;
  /** How often each bench id appeared in the dumps so far. */
  deliveries(): Promise<Map<string, number>>;
  /** Contents of every dump file so far: one per transaction with `per-transaction`, else the one file. */
  dumps(): Promise<string[]>;
  /** Empties the dumps (between benchmark cells). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

const SINK = '/usr/sbin/smtp-sink';

export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const dir = await mkdtemp(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'smtp-sink-'));
  await chmod(dir, 0o777); // as root, smtp-sink drops to nobody before it writes
  let generation = 0;
  const dumpDir = () => join(dir, `generation-${generation}`);
  const port = await freePort();
  const host = '127.0.0.1';
  let child: ChildProcess | undefined;

  const start = async () => {
    await mkdir(dumpDir());
    await chmod(dumpDir(), 0o777); // the umask would narrow mkdir's mode
    // As root smtp-sink insists on dropping privileges (-u); as anyone else it must not be asked to.
    const args = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), '-m', String(options.maxConnections ?? 1024), '-t', '300'];
    for (const [flag, commands] of [['-r', options.softReject], ['-f', options.hardReject], ['-q', options.disconnectAfter], ['-Q', options.hangUpAfter]] as const) {
      if (commands?.length) args.push(flag, commands.join(','));
    }
    // -d names each transaction's file from a strftime template plus a random suffix
    args.push(...((options.dump ?? 'one-file') === 'one-file' ? ['-D', join(dumpDir(), 'dump')] : ['-d', `${dumpDir()}/%H%M%S.`]));
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
      throw new Error(`smtp-sink ${args.join(' ')} did not start: ${error.message} ${stderr}`);
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
  const dumpFiles = async () => (await readdir(dumpDir())).sort().map((file) => join(dumpDir(), file));
  await start();

  return {
    host,
    port,
    get pid() {
      return child?.pid ?? 0;
    },
    async deliveries() {
      const counts = new Map<string, number>();
      for (const file of await dumpFiles()) await countIds(file, counts);
      return counts;
    },
    async dumps() {
      return Promise.all((await dumpFiles()).map((file) => readFile(file, 'latin1')));
    },
    async reset() {
      // smtp-sink keeps its dump file open; restarting it with a new folder is the clean cut.
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

async function countIds(file: string, counts: Map<string, number>): Promise<void> {
  const prefix = `${ID_HEADER.toLowerCase()}:`;
  const lines = createInterface({ input: createReadStream(file, { encoding: 'latin1' }), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.length > 80 || (line[0] !== 'X' && line[0] !== 'x')) continue;
      if (!line.toLowerCase().startsWith(prefix)) continue;
      const id = line.slice(prefix.length).trim();
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
