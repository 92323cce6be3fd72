/**
 * Graceful shutdown: readyz false at once, listeners close after the delay,
 * idle sessions get 421, in-flight transactions finish (or get 451 when the
 * grace period runs out, with nothing delivered), and the process exits 0 on
 * SIGTERM after draining.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { isListening } from '../../testkit/ports';
import { sendMail } from '../../testkit/send-mail';
import { openConnection, startData } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway, testSpoolDir } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';

const REPO = resolve(__dirname, '../..');
let upstream: RecordingUpstream | undefined;
let gw: TestGateway | undefined;
const track = closeAfterEach();

const readyz = (port: number) => fetch(`http://127.0.0.1:${port}/readyz`).then((res) => res.status);

describe('drain', () => {
  it('readyz false at once; after the delay new connections are refused, idle sessions get 421, in-flight ones finish with 250', async () => {
    upstream = track(await startRecordingUpstream({ replyDelayMs: 1200 }));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, drain: { delaySeconds: 0.4, graceSeconds: 10 } }));
    expect(await readyz(gw.opsPort)).toBe(200);
    const idle = track(await openConnection(gw.relayPort));
    await idle.command('EHLO idle.client');
    const inFlight = sendMail(gw.relayPort);
    await eventually(() => upstream!.attempts.some((attempt) => attempt.completed), 'the message to reach the upstream');

    const drained = gw.gateway.drain();
    expect(await readyz(gw.opsPort)).toBe(503);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_ready 0/);
    // during the delay the listener still accepts (the load balancer is still deregistering)
    expect(await isListening('127.0.0.1', gw.relayPort)).toBe(true);

    const bye = await idle.reply(5000);
    expect(bye.code).toBe(421);
    expect(bye.text).toMatch(/^421 4\.3\.2 /);
    expect(await isListening('127.0.0.1', gw.relayPort)).toBe(false);

    const reply = await inFlight;
    expect(reply.code).toBe(250);
    await drained;
    expect(upstream.messages).toHaveLength(1);
  });

  it('when the grace period runs out, in-flight transactions get 451 4.3.2 and nothing is delivered', async () => {
    upstream = track(await startRecordingUpstream({}));
    gw = track(await startTestGateway({ upstreamPort: upstream.port, drain: { delaySeconds: 0, graceSeconds: 0.5 } }));
    const connection = track(await openConnection(gw.relayPort));
    expect((await startData(connection, 'app@example.com', ['user@example.org'])).at(-1)?.code).toBe(354);
    connection.write('From: app@example.com\r\nSubject: slow\r\n\r\npart one\r\n');
    await eventually(async () => (await gw!.spooledBytes()) > 0, 'data to reach the spool');
    const started = Date.now();
    const drained = gw.gateway.drain();
    // the client is too slow: it finishes only after the grace period
    await new Promise((r) => setTimeout(r, 800));
    connection.write('part two\r\n.\r\n');
    const reply = await connection.reply(5000).catch((err: Error) => ({ code: 0, text: err.message }));
    await drained;
    expect(Date.now() - started).toBeLessThan(5000);
    // the dot came after the abort: the client hears 451 (or, if the session was closed first, 421); never 250
    expect([451, 421]).toContain(reply.code);
    expect(upstream.messages).toHaveLength(0);
    // the message never was whole, so the upstream was never asked; the spool is empty again
    expect(upstream.mailFroms).toHaveLength(0);
    expect(await gw.spooledBytes()).toBe(0);
  });

  it('SIGTERM to the gateway process: drains, the in-flight message is completed, exit code 0', async () => {
    upstream = track(await startRecordingUpstream({ replyDelayMs: 1000 }));
    const gateway = await spawnGateway(upstream.port, { SMTPGW_DRAIN__DELAY_SECONDS: '0.2', SMTPGW_DRAIN__GRACE_SECONDS: '10' });
    try {
      const inFlight = sendMail(gateway.relayPort);
      await eventually(() => upstream!.attempts.some((attempt) => attempt.completed), 'the message to reach the upstream');
      gateway.child.kill('SIGTERM');
      expect((await inFlight).code).toBe(250);
      expect(await gateway.exited).toBe(0);
      expect(upstream.messages).toHaveLength(1);
      expect(gateway.lines.some((line) => line.msg === 'drained')).toBe(true);
    } finally {
      gateway.kill();
    }
  });

  it('a second SIGTERM exits at once, without waiting for the grace period', async () => {
    upstream = track(await startRecordingUpstream({ stallRate: 1 }));
    const gateway = await spawnGateway(upstream.port, { SMTPGW_DRAIN__DELAY_SECONDS: '0', SMTPGW_DRAIN__GRACE_SECONDS: '60' });
    try {
      const inFlight = sendMail(gateway.relayPort);
      await eventually(() => upstream!.attempts.some((attempt) => attempt.completed), 'the message to reach the upstream');
      gateway.child.kill('SIGTERM');
      await eventually(() => gateway.lines.some((line) => line.msg === 'listeners closed'), 'the drain to start');
      const started = Date.now();
      gateway.child.kill('SIGTERM');
      expect(await gateway.exited).toBe(1);
      expect(Date.now() - started).toBeLessThan(5000);
      // the client never got a 250 for a message the upstream never accepted
      expect((await inFlight).code).not.toBe(250);
      expect(upstream.messages).toHaveLength(0);
    } finally {
      gateway.kill();
    }
  });
});

/** The gateway as its own process (tsx), configured by environment, relaying to `upstreamPort`. */
async function spawnGateway(upstreamPort: number, env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'gateway/src/main.ts')], {
    cwd: REPO,
    env: {
      ...process.env,
      SMTPGW_LISTENERS__RELAY__PORT: '0',
      SMTPGW_OPS__PORT: '0',
      SMTPGW_UPSTREAM__HOST: '127.0.0.1',
      SMTPGW_UPSTREAM__PORT: String(upstreamPort),
      SMTPGW_UPSTREAM__SECURITY: 'none',
      SMTPGW_SPOOL__DIR: testSpoolDir(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
  const kill = () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  try {
    await eventually(() => lines.filter((line) => line.msg === 'listening').length >= 2, 'the listening lines', 20_000);
  } catch (err) {
    kill();
    throw err;
  }
  const relay = lines.find((line) => line.msg === 'listening' && line.listener === 'relay');
  const ops = lines.find((line) => line.msg === 'listening' && line.listener === 'ops');
  expect(relay).toMatchObject({ address: '127.0.0.1' });
  expect(Number(ops?.port)).toBeGreaterThan(0);
  return { child, lines, exited, kill, relayPort: Number(relay!.port) };
}
