/**
 * Hostile input, part one: who may relay. One gateway process that allows only
 * 127.0.0.1/32 (and 127.0.0.3/32) to relay without AUTH, trusts PROXY headers
 * only from 127.0.0.9, and caps connections per IP. Each attack comes from its
 * own loopback address (the client socket is bound to it) so per-IP counters
 * of one case never decide another. Every case checks what the upstream got.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAILURE_DELAY_MS } from '../../gateway/src/smtp/auth';
import { hashPassword } from '../../gateway/src/smtp/auth-users';
import { benchGatewayConfig, startGatewayProcess, type GatewayProcess } from '../lib/gateway-process';
import { ID_HEADER } from '../../testkit/test-message';
import { rawTransaction, type RawTransactionOptions } from '../../testkit/raw-transaction';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { SmtpConnection, openSession } from '../../testkit/smtp-client';

const USER = 'app1';
const PASSWORD = 'correct horse battery staple';
const MAX_AUTH_FAILURES = 3;
const MAX_PER_IP = 5;

const plain = (user: string, password: string) => `AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`;

let sequence = 0;
function message(label: string): { id: string; data: string } {
  const id = `acl-${label.replace(/\W+/g, '_')}-${Date.now()}-${++sequence}`;
  return { id, data: `From: <sender@bench.test>\r\nSubject: ${id}\r\n${ID_HEADER}: ${id}\r\n\r\nbody\r\n.\r\n` };
}

/** PROXY v2 header (binary) claiming an IPv4 source. */
function proxyV2(source: string, destination: string): Buffer {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addresses = Buffer.alloc(12);
  source.split('.').forEach((octet, i) => addresses.writeUInt8(Number(octet), i));
  destination.split('.').forEach((octet, i) => addresses.writeUInt8(Number(octet), 4 + i));
  addresses.writeUInt16BE(40000, 8);
  addresses.writeUInt16BE(25, 10);
  return Buffer.concat([signature, Buffer.from([0x21, 0x11, 0x00, 12]), addresses]);
}

describe('access control: open relay, AUTH guessing, connection floods', () => {
  let upstream: RecordingUpstream;
  let gateway: GatewayProcess;
  let relay: { host: string; port: number };

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    const dir = await mkdtemp(join(tmpdir(), 'bench-acl-'));
    const usersFile = join(dir, 'users');
    await writeFile(usersFile, `${USER}:${await hashPassword(PASSWORD)}\n`);
    gateway = await startGatewayProcess({
      config: benchGatewayConfig(upstream, {
        policy: { allowedNetworks: ['127.0.0.1/32', '127.0.0.3/32'], maxConnectionsPerIp: MAX_PER_IP },
        // Plain-text AUTH only so guessing can be tried without a TLS handshake per attempt.
        auth: { usersFile, allowInsecure: true, maxFailures: MAX_AUTH_FAILURES, failureWindowSeconds: 60 },
        proxyProtocol: { enabled: true, trustedNetworks: ['127.0.0.9/32'] },
            }),
      runtime: 'tsx',
    });
    relay = { host: '127.0.0.1', port: gateway.ports.relay };
  });
  afterAll(async () => {
    const exit = await gateway?.stop(10_000);
    await upstream?.close();
    expect(exit?.code).toBe(0);
  });

  /** Sends one message as `options` says; returns the final code and whether the upstream got it. */
  async function attempt(label: string, options: Omit<RawTransactionOptions, 'data'>) {
    const { id, data } = message(label);
    const result = await rawTransaction(relay, { ...options, data });
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { ...result, delivered: upstream.deliveries.has(id) };
  }

  describe('open relay', () => {
    it('control: from 127.0.0.1 (allowed) a message relays', async () => {
      const result = await attempt('control', { localAddress: '127.0.0.1' });
      expect(result.final?.code).toBe(250);
      expect(result.delivered).toBe(true);
    });

    it('control: from 127.0.0.20 with the right password a message relays', async () => {
      const result = await attempt('good-auth', { localAddress: '127.0.0.20', before: [plain(USER, PASSWORD)] });
      expect(result.replies.find((r) => r.code === 235)).toBeTruthy();
      expect(result.final?.code).toBe(250);
      expect(result.delivered).toBe(true);
    });

    for (const pipelining of [false, true]) {
      it(`from 127.0.0.2 without AUTH (${pipelining ? 'pipelined' : 'step by step'}): RCPT refused 550 5.7.1, nothing relayed`, async () => {
        const result = await attempt('no-auth', { localAddress: '127.0.0.2', pipelining });
        expect(result.final?.code).toBe(550);
        expect(result.replies.some((r) => r.code === 550 && r.lines[0].startsWith('5.7.1'))).toBe(true);
        expect(result.delivered).toBe(false);
      });
    }

    it('from 127.0.0.21 with a wrong password (PLAIN): 535, then relaying refused', async () => {
      const result = await attempt('bad-plain', { localAddress: '127.0.0.21', before: [plain(USER, 'wrong')] });
      expect(result.replies.some((r) => r.code === 535)).toBe(true);
      expect(result.final?.code).toBe(550);
      expect(result.delivered).toBe(false);
    });

    it('from 127.0.0.22 with an unknown user (LOGIN): 535, then relaying refused', async () => {
      const b64 = (text: string) => Buffer.from(text).toString('base64');
      const result = await attempt('bad-login', { localAddress: '127.0.0.22', before: ['AUTH LOGIN', b64('nobody'), b64(PASSWORD)] });
      expect(result.replies.some((r) => r.code === 535)).toBe(true);
      expect(result.final?.code).toBe(550);
      expect(result.delivered).toBe(false);
    });

    it('from 127.0.0.23 with XCLIENT/XFORWARD claiming 127.0.0.1: ignored, relaying refused', async () => {
      const result = await attempt('xclient', { localAddress: '127.0.0.23', before: ['XCLIENT ADDR=127.0.0.1', 'XFORWARD ADDR=127.0.0.1'] });
      expect(result.replies.slice(0, 2).every((r) => r.code >= 500)).toBe(true);
      expect(result.final?.code).not.toBe(250);
      expect(result.delivered).toBe(false);
    });

    for (const [name, rcpt] of Object.entries({
      'percent hack': 'victim%remote.test@localhost',
      'source route': '@gateway.bench.test:victim@remote.test',
      'double at': 'victim@remote.test@127.0.0.1',
      'address literal': 'victim@[127.0.0.1]',
    })) {
      it(`from 127.0.0.2, recipient trick (${name}): nothing relayed`, async () => {
        const result = await attempt(`trick-${name}`, { localAddress: '127.0.0.2', rcpts: [`RCPT TO:<${rcpt}>`] });
        expect(result.final?.code).not.toBe(250);
        expect(result.delivered).toBe(false);
      });
    }

    const forged: Record<string, Buffer> = {
      'PROXY v1': Buffer.from('PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n'),
      'PROXY v2': proxyV2('127.0.0.1', '127.0.0.1'),
    };
    for (const [name, header] of Object.entries(forged)) {
      it(`from 127.0.0.24, a forged ${name} header claiming 127.0.0.1: refused, nothing relayed`, async () => {
        const { id, data } = message(`forged-${name}`);
        const connection = await SmtpConnection.connect({ ...relay, localAddress: '127.0.0.24' });
        // An attacker sends the header first and everything else right behind it.
        connection.write(Buffer.concat([header, Buffer.from(`EHLO evil.test\r\nMAIL FROM:<a@bench.test>\r\nRCPT TO:<b@sink.test>\r\nDATA\r\n${data}QUIT\r\n`)]));
        const closed = await connection.waitClosed(10_000).then(() => true, () => false);
        connection.destroy();
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(closed).toBe(true);
        expect(upstream.deliveries.has(id)).toBe(false);
      });
    }

    it('from the trusted load balancer (127.0.0.9), a PROXY v2 header is honoured both ways', async () => {
      const send = async (source: string) => {
        const { id, data } = message(`lb-${source}`);
        const connection = await SmtpConnection.connect({ ...relay, localAddress: '127.0.0.9' });
        connection.write(proxyV2(source, '127.0.0.1'));
        const session = await openSession(connection);
        expect(session.ok).toBe(true);
        const rcpt = (await connection.command('MAIL FROM:<a@bench.test>'), await connection.command('RCPT TO:<b@sink.test>'));
        if (rcpt.code === 250) {
          await connection.command('DATA');
          connection.write(data);
          await connection.reply();
        }
        await connection.quit();
        await new Promise((resolve) => setTimeout(resolve, 50));
        return { rcpt: rcpt.code, delivered: upstream.deliveries.has(id) };
      };
      // The header says the client is 127.0.0.2 (not allowed), then 127.0.0.1 (allowed).
      expect(await send('127.0.0.2')).toEqual({ rcpt: 550, delivered: false });
      expect(await send('127.0.0.1')).toEqual({ rcpt: 250, delivered: true });
    });
  });

  describe('AUTH guessing', () => {
    it(`${MAX_AUTH_FAILURES} wrong passwords from one IP, each answered more slowly, then even the right one is refused there while another IP still authenticates`, async () => {
      const guesser = await SmtpConnection.connect({ ...relay, localAddress: '127.0.0.30' });
      expect((await openSession(guesser)).ok).toBe(true);
      const failures: Array<{ code: number; ms: number }> = [];
      for (let i = 0; i < MAX_AUTH_FAILURES; i += 1) {
        const t0 = performance.now();
        const reply = await guesser.command(plain(USER, `guess-${i}`));
        failures.push({ code: reply.code, ms: performance.now() - t0 });
      }
      expect(failures.map((f) => f.code)).toEqual(Array(MAX_AUTH_FAILURES).fill(535));
      // Slowed: the k-th failure's 535 comes no sooner than k delay steps after the attempt.
      failures.forEach((failure, k) => expect(failure.ms).toBeGreaterThanOrEqual((k + 1) * FAILURE_DELAY_MS - 5));
      const blocked = await guesser.command(plain(USER, PASSWORD));
      expect(blocked.code).toBeGreaterThanOrEqual(400);
      expect(blocked.code).not.toBe(235);
      await guesser.quit();

      // A new connection from the same IP is still refused AUTH.
      const again = await rawTransaction(relay, { localAddress: '127.0.0.30', before: [plain(USER, PASSWORD)], data: message('guess-again').data });
      expect(again.replies[0].code).not.toBe(235);
      expect(again.final?.code).not.toBe(250);

      // Another IP with the right password is served.
      const other = await attempt('other-ip', { localAddress: '127.0.0.31', before: [plain(USER, PASSWORD)] });
      expect(other.replies[0].code).toBe(235);
      expect(other.delivered).toBe(true);
    });
  });

  describe('connection flood', () => {
    it(`one IP hits its limit of ${MAX_PER_IP} connections while 127.0.0.3 is still served`, async () => {
      const flood = await Promise.all(
        Array.from({ length: MAX_PER_IP + 7 }, () => SmtpConnection.connect({ ...relay, localAddress: '127.0.0.40' })),
      );
      const greetings = await Promise.all(flood.map((connection) => connection.reply(10_000).then((r) => r.code, () => 0)));
      expect(greetings.filter((code) => code === 220)).toHaveLength(MAX_PER_IP);
      expect(greetings.filter((code) => code === 421)).toHaveLength(7);

      const served = await attempt('flood-bystander', { localAddress: '127.0.0.3' });
      expect(served.final?.code).toBe(250);
      expect(served.delivered).toBe(true);

      // Closing the flood frees its slots again.
      for (const connection of flood) connection.destroy();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const later = await SmtpConnection.connect({ ...relay, localAddress: '127.0.0.40' });
      expect((await later.reply(10_000)).code).toBe(220);
      await later.quit();
      expect(gateway.exited()).toBeUndefined();
    });
  });
});
