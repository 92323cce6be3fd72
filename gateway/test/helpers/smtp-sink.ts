/**
 * Postfix's smtp-sink as an upstream for gateway tests: a second, independent
 * SMTP server implementation. Each transaction is dumped to its own file
 * (-d), and its replies can be switched to soft (-r) or hard (-f) refusals or
 * a silent disconnect (-q) for chosen commands, e.g. "." for the final dot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmtpSinkOptions {
  /** Refuse these commands with 450 (e.g. ['.']). */
  readonly softReject?: readonly string[];
  /** Refuse these commands with 500. */
  readonly hardReject?: readonly string[];
  /** Disconnect without a reply after these commands. */
  readonly disconnectAfter?: readonly string[];
}

export interface SmtpSinkProcess {
  readonly port: number;
  /** Contents of every dumped transaction so far. */
  dumps(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSinkProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-sink-'));
  await chmod(dir, 0o777); // it writes as nobody
  const port = await freePort();
  const args = ['-u', 'nobody', '-d', `${dir}/%H%M%S.`];
  if (options.softReject?.length) args.push('-r', options.softReject.join(','));
  if (options.hardReject?.length) args.push('-f', options.hardReject.join(','));
  if (options.disconnectAfter?.length) args.push('-q', options.disconnectAfter.join(','));
  args.push(`127.0.0.1:${port}`, '16');
  const child: ChildProcess = spawn('smtp-sink', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await waitForPort(port).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`smtp-sink ${args.join(' ')} did not start: ${err.message} ${stderr}`);
  });
  return {
    port,
    async dumps() {
      const files = (await readdir(dir)).sort();
      return Promise.all(files.map((file) => readFile(join(dir, file), 'latin1')));
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not open after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
