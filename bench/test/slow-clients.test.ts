/**
 * Issue 9 section 2: a slow client must never stall everyone else's mail.
 * The gateway runs as its own process with the default pool of 5 upstream
 * connections, in front of a recording upstream that counts every connection
 * and every MAIL FROM it sees.
 *
 * - Five clients each send DATA one byte every DRIP_MS (the default pool size,
 *   which held every pooled connection when the gateway streamed DATA
 *   upstream). Meanwhile a normal message's latency (MAIL FROM to the 250
 *   after its dot) stays within 2× its unloaded latency, and the slow clients
 *   caused no upstream transaction at all.
 * - 200 clients vanish mid-DATA: zero upstream connections, zero upstream
 *   transactions, and the gateway's spool is empty again.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { median } from '../lib/checker';
import { benchGatewayConfig, startGatewayProcess, type GatewayProcess } from '../lib/gateway-process';
import { bodyForTotal, makeHead } from '../../testkit/test-message';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { SmtpConnection } from '../../testkit/smtp-client';

const SLOW_CLIENTS = 5;
const DRIP_MS = 200;
const SAMPLES = 15;
const VANISHING = 200;
const BATCH = 50;
const VANISH_AFTER_MS = 500;
const BODY = bodyForTotal(8 * 1024);
/** Scheduler noise on a shared 2-core machine: a few ms either way on a loopback round trip of a few ms. */
const NOISE_MS = 15;

describe('slow and vanishing clients (issue 9 section 2)', () => {
  let upstream: RecordingUpstream;
  let gateway: GatewayProcess;

  // a gateway and upstream per case, so neither case can inherit the other's stuck connections
  beforeEach(async () => {
    upstream = await startRecordingUpstream();
    gateway = await startGatewayProcess({
      config: benchGatewayConfig(upstream, { policy: { maxConnectionsPerIp: 1000 } }),
      runtime: 'tsx',
    });
  });
  afterEach(async () => {
    await gateway?.stop(10_000);
    await upstream?.close();
  });

  const connect = async () => {
    const connection = await SmtpConnection.connect({ host: '127.0.0.1', port: gateway.ports.relay });
    expect((await connection.reply(10_000)).code).toBe(220);
    expect((await connection.command('EHLO client.test')).code).toBe(250);
    return connection;
  };

  const startData = async (connection: SmtpConnection, id: string) => {
    expect((await connection.command('MAIL FROM:<app@example.com>')).code).toBe(250);
    expect((await connection.command('RCPT TO:<user@example.org>')).code).toBe(250);
    expect((await connection.command('DATA')).code).toBe(354);
    return Buffer.concat([makeHead(id, 'app@example.com', 'user@example.org'), BODY]);
  };

  /** Milliseconds from MAIL FROM to the 250 after the dot, for `count` messages one after another. */
  const latencies = async (count: number, label: string) => {
    const connection = await connect();
    const samples: number[] = [];
    try {
      for (let i = 0; i < count; i += 1) {
        const started = performance.now();
        const message = await startData(connection, `${label}-${i}`);
        connection.write(Buffer.concat([message, Buffer.from('.\r\n')]));
        expect((await connection.reply(30_000)).code).toBe(250);
        samples.push(performance.now() - started);
      }
    } finally {
      await connection.quit();
    }
    return samples;
  };

  it(`${SLOW_CLIENTS} clients sending DATA at 1 byte per ${DRIP_MS} ms: a normal message stays within 2× its unloaded latency`, async () => {
    await latencies(3, 'warm-up');
    const unloaded = median(await latencies(SAMPLES, 'unloaded'));
    const before = { ...upstream.counts };

    const slow = await Promise.all(Array.from({ length: SLOW_CLIENTS }, () => connect()));
    const timers: NodeJS.Timeout[] = [];
    try {
      for (const [n, connection] of slow.entries()) {
        const message = await startData(connection, `slow-${n}`);
        let offset = 0;
        timers.push(setInterval(() => connection.write(message.subarray(offset, ++offset)), DRIP_MS));
      }
      // let every slow client get well into its DATA first
      await new Promise((resolve) => setTimeout(resolve, 5 * DRIP_MS));
      const loaded = median(await latencies(SAMPLES, 'loaded'));
      console.log(`slow clients: unloaded median ${unloaded.toFixed(1)} ms, with ${SLOW_CLIENTS} slow clients ${loaded.toFixed(1)} ms`);
      expect(loaded).toBeLessThanOrEqual(2 * unloaded + NOISE_MS);
      // the slow clients are still dripping: none of them ever reached the upstream
      expect(slow.every((connection) => !connection.closed)).toBe(true);
      expect(upstream.counts.transactions - before.transactions).toBe(SAMPLES);
    } finally {
      for (const timer of timers) clearInterval(timer);
      for (const connection of slow) connection.destroy();
    }
    expect(await gateway.connectionsSettle(10_000)).toBe(0);
    expect(upstream.counts.transactions - before.transactions).toBe(SAMPLES);
  });

  it(`${VANISHING} clients vanishing mid-DATA: zero upstream connections and transactions, spool empty again`, async () => {
    const before = { ...upstream.counts };
    const finishedBefore = await gateway.metric('smtp_gateway_messages_total');
    for (let start = 0; start < VANISHING; start += BATCH) {
      await Promise.all(
        Array.from({ length: BATCH }, async (_, n) => {
          const connection = await connect();
          const message = await startData(connection, `vanish-${start + n}`);
          // half the message, then a pause long enough for an upstream connection and its MAIL FROM, then gone
          connection.write(message.subarray(0, message.length / 2));
          await new Promise((resolve) => setTimeout(resolve, VANISH_AFTER_MS));
          connection.destroy();
        }),
      );
    }
    expect(await gateway.connectionsSettle(10_000)).toBe(0);
    expect(upstream.counts.connections - before.connections).toBe(0);
    expect(upstream.counts.transactions - before.transactions).toBe(0);
    expect(await gateway.metric('smtp_gateway_spool_bytes')).toBe(0);
    // every one of them ended as a transaction of its own (aborted), none was merged or lost
    expect((await gateway.metric('smtp_gateway_messages_total')) - finishedBefore).toBe(VANISHING);
  });
});
