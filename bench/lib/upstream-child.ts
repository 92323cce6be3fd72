/**
 * Runs bench/upstream-process.ts as a child process that a fault scenario can
 * kill with SIGKILL and start again on the same port; deliveries are read from
 * its record file, which outlives every incarnation.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from './gateway-process';
import { readRecordFile, type UpstreamBehaviour } from '../../testkit/recording-upstream';

export interface UpstreamChild {
  readonly host: string;
  readonly port: number;
  deliveries(): Map<string, number>;
  /** SIGKILL: no goodbye to anyone. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startUpstreamChild(behaviour: UpstreamBehaviour = {}): Promise<UpstreamChild> {
  const recordFile = join(await mkdtemp(join(tmpdir(), 'bench-upstream-')), 'delivered.txt');
  let child: ChildProcess | undefined;
  let port = 0;

  const start = async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/upstream-process.ts'), JSON.stringify({ ...behaviour, port, recordFile })], {
      cwd: REPO_ROOT,
      // stdin is a lifeline: the child exits when it closes, so a crashed test leaves no orphan.
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    child = proc;
    const first = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: proc.stdout! });
      lines.once('line', resolve);
      proc.once('exit', (code) => reject(new Error(`upstream process exited ${code} before listening`)));
    });
    port = (JSON.parse(first) as { port: number }).port;
  };
  const kill = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    deliveries: () => readRecordFile(recordFile),
    kill,
    restart: start,
    stop: kill,
  };
}
