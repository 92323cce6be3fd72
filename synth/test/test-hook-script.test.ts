/**
 * The `helm test` pod's script, run on busybox (as in the pod) against real SMTP
 * servers on loopback: it passes against an SMTP server and fails against
 * anything that does not answer 220/250/221.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';
import { SMTP_TEST_SCRIPT } from '../constructs/test-hook';
import { tempDir } from './support';

const busybox = spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim();

/** A PATH holding only busybox applets, like the busybox image. */
function busyboxPath(): string {
  const dir = join(tempDir('busybox'), 'bin');
  mkdirSync(dir);
  for (const applet of ['sh', 'nc', 'grep', 'tr', 'head', 'tail', 'sleep', 'printf', 'echo']) symlinkSync(busybox, join(dir, applet));
  return dir;
}

function runScript(endpoint: string, proxyHeader = false): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const path = busyboxPath();
    const env = { PATH: path, SMTP_ENDPOINT: endpoint, SMTP_PROXY_HEADER: String(proxyHeader) };
    const child = spawn(join(path, 'sh'), ['-c', SMTP_TEST_SCRIPT], { env });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ code: code ?? -1, output }));
  });
}

const listen = (server: Server | SMTPServer) =>
  new Promise<number>((resolve) => {
    const s = server as Server;
    s.listen(0, '127.0.0.1', () => resolve((((server as any).server ?? s).address() as AddressInfo).port));
  });

describe.skipIf(!busybox)('helm test script', () => {
  const smtp = new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS'], logger: false, banner: 'helm-test target' });
  const notSmtp = createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  let smtpPort = 0;
  let otherPort = 0;

  beforeAll(async () => {
    smtpPort = await listen(smtp);
    otherPort = await listen(notSmtp);
  });
  afterAll(async () => {
    await new Promise((r) => smtp.close(() => r(undefined)));
    await new Promise((r) => notSmtp.close(() => r(undefined)));
  });

  it('passes against an SMTP server after EHLO, NOOP and QUIT', async () => {
    const result = await runScript(`127.0.0.1:${smtpPort}`);
    expect(result.output).toMatch(/^220 /m);
    expect(result.output).toMatch(/^221 /m);
    expect(result.output).toContain('OK, 127.0.0.1');
    expect(result.code).toBe(0);
  });

  it('fails against a server that does not speak SMTP', async () => {
    const result = await runScript(`127.0.0.1:${otherPort}`);
    expect(result.output).toContain('FAILED: expected the 220 greeting');
    expect(result.code).toBe(1);
  });
});

// With config.proxyProtocol on, the pod's address is inside trustedNetworks (the VPC), so the gateway
// waits for a PROXY header from it as from the NLB.
describe.skipIf(!busybox)('helm test script against a gateway that expects PROXY headers', () => {
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await startTestGateway({ proxyProtocol: { enabled: true, trustedNetworks: ['127.0.0.0/8'] } });
  });
  afterAll(async () => {
    await gateway.close();
  });

  it('passes when it sends a PROXY header first', async () => {
    const result = await runScript(`127.0.0.1:${gateway.relayPort}`, true);
    expect(result.output).toContain('OK, 127.0.0.1');
    expect(result.code).toBe(0);
  });

  it('fails without one', async () => {
    const result = await runScript(`127.0.0.1:${gateway.relayPort}`, false);
    expect(result.output).toContain('FAILED');
    expect(result.code).toBe(1);
  });
});
