/**
 * aws-ses-v2-local (npm) as a real SES v2 endpoint: a child process on
 * 127.0.0.1 with an ephemeral port, stopped by its PID. What it stored is read
 * back from `GET /store`. Its limits (from its source): for raw content it
 * ignores Destination and takes the recipients from the headers (so it cannot
 * show Bcc handling), keeps no headers, refuses bodies over 25 MB and never
 * throttles; the recording endpoint (recording-ses.ts) covers those.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

const CLI = resolve(__dirname, '../node_modules/aws-ses-v2-local/dist/cli.js');
// it loads express, mailparser and yargs first: slow on a busy 2-core machine
export const SES_LOCAL_START_TIMEOUT_MS = 60_000;

export interface StoredEmail {
  readonly messageId: string;
  readonly from: string;
  readonly destination: { readonly to: string[]; readonly cc: string[]; readonly bcc: string[] };
  readonly subject: string;
  readonly body: { readonly text?: string; readonly html?: string };
}

export interface SesLocal {
  /** e.g. http://127.0.0.1:40123 */
  readonly endpoint: string;
  readonly pid: number;
  emails(): Promise<StoredEmail[]>;
  stop(): Promise<void>;
}

export async function startSesLocal(): Promise<SesLocal> {
  // SMTP_TRANSPORT would make it forward every message somewhere: never from a test
  const env = { ...process.env };
  delete env.SMTP_TRANSPORT;
  const child = spawn(process.execPath, [CLI, '--host', '127.0.0.1', '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`aws-ses-v2-local did not start within ${SES_LOCAL_START_TIMEOUT_MS} ms`)), SES_LOCAL_START_TIMEOUT_MS);
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.once('exit', (code) => fail(new Error(`aws-ses-v2-local exited with ${code} before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = /server running at http:\/\/[^:]+:(\d+)/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve(Number(match[1]));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    pid: child.pid!,
    async emails() {
      const response = await fetch(`${endpoint}/store`);
      return ((await response.json()) as { emails: StoredEmail[] }).emails;
    },
    stop: () => stopChild(child),
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
