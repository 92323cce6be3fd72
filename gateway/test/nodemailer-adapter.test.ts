/**
 * The contract between relay/nodemailer-adapter.ts and the installed nodemailer
 * release: the internals the adapter relies on exist and behave as it expects,
 * checked with real SMTP over loopback against a real smtp-server.
 */
import { getEventListeners, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { text } from 'node:stream/consumers';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import SMTPPool from 'nodemailer/lib/smtp-pool';
import { Registry } from 'prom-client';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../src/ops/metrics';
import { dotStuffingFlush, dotStuffingTransform } from '../src/relay/dot-stuffing';
import { installPatches, NodemailerPool, type PoolError, type PoolOptions } from '../src/relay/nodemailer-adapter';
import { bufferedMessage } from '../src/relay/spool';
import { eventually } from './helpers/eventually';
import { startTestUpstream } from './helpers/test-upstream';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function pool(port: number, options: PoolOptions = {}): NodemailerPool {
  const created = new NodemailerPool({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, logger: false, ...options });
  cleanups.push(() => created.close(true));
  return created;
}

const never = new AbortController().signal;

describe('the nodemailer internals the adapter patches', () => {
  it('exist on the installed release, and installing the patches twice is harmless', () => {
    const connection = SMTPConnection.prototype as unknown as Record<string, unknown>;
    expect(typeof connection._setEnvelope).toBe('function');
    expect(typeof connection._sendCommand).toBe('function');
    const data = DataStream.prototype as unknown as Record<string, unknown>;
    expect(typeof data._transform).toBe('function');
    expect(typeof data._flush).toBe('function');
    installPatches();
    installPatches();
    expect(data._transform).toBe(dotStuffingTransform);
    expect(data._flush).toBe(dotStuffingFlush);
  });

  it('SMTPPool keeps its connections and queue in the arrays snapshot() reads', () => {
    const raw = new SMTPPool({ host: '127.0.0.1', port: 9, logger: false }) as unknown as Record<string, unknown>;
    try {
      expect(Array.isArray(raw._connections)).toBe(true);
      expect(Array.isArray(raw._queue)).toBe(true);
    } finally {
      (raw as unknown as SMTPPool).close();
    }
  });

  it("DataStream with the patch sends the last data and the final dot in one chunk (one socket write)", async () => {
    installPatches();
    const stream = new DataStream();
    const chunks: string[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString('latin1')));
    stream.write(Buffer.from('Subject: a\r\n\r\n.first\r\n'));
    stream.end(Buffer.from('last line\r\n'));
    await once(stream, 'end');
    expect(chunks).toEqual(['Subject: a\r\n\r\n..first\r\n', 'last line\r\n.\r\n']);
  });
});

describe('NodemailerPool with a real upstream', () => {
  it('sends a ready-made message byte for byte, dots stuffed and unstuffed transparently', async () => {
    const upstream = await startTestUpstream();
    cleanups.push(() => upstream.close());
    const message = 'From: <a@example.com>\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n';
    const delivery = await pool(upstream.port).send({ from: 'a@example.com', to: ['b@example.org'], message: bufferedMessage(Buffer.from(message)), signal: never });
    expect(delivery.response).toMatch(/^250 /);
    expect(delivery.rejected).toEqual([]);
    expect(upstream.messages).toHaveLength(1);
    expect(upstream.messages[0].raw.toString('latin1')).toBe(message);
    expect(upstream.messages[0].to).toEqual(['b@example.org']);
  });

  it('streams a message too large for one buffer, and sends it again from its start on each send', async () => {
    const upstream = await startTestUpstream();
    cleanups.push(() => upstream.close());
    const line = `${'x'.repeat(76)}\r\n`;
    const body = Buffer.from(`Subject: big\r\n\r\n${line.repeat(Math.ceil((300 * 1024) / line.length))}`);
    const sender = pool(upstream.port);
    for (let n = 0; n < 2; n++) await sender.send({ from: 'a@example.com', to: ['b@example.org'], message: bufferedMessage(body), signal: never });
    expect(upstream.messages.map((m) => m.raw.equals(body))).toEqual([true, true]);
  });

  it('reports the recipients refused at RCPT to beforeData, and its error stops the data', async () => {
    const upstream = await startTestUpstream({ rejectRecipient: 'gone@example.org' });
    cleanups.push(() => upstream.close());
    const seen: PoolError[][] = [];
    const sender = pool(upstream.port);
    const message = bufferedMessage(Buffer.from('Subject: x\r\n\r\nhi\r\n'));
    const to = ['b@example.org', 'gone@example.org'];
    const accepted = await sender.send({ from: 'a@example.com', to, message, signal: never, beforeData: (rejected) => void seen.push([...rejected]) });
    expect(accepted.rejected.map((err) => [err.recipient, err.responseCode])).toEqual([['gone@example.org', 550]]);
    expect(seen.map((rejected) => rejected.map((err) => err.recipient))).toEqual([['gone@example.org']]);

    const stop = Object.assign(new Error('stopped before data'), { responseCode: 451 });
    const failed = await sender.send({ from: 'a@example.com', to, message, signal: never, beforeData: () => stop }).catch((err: PoolError) => err);
    expect(failed).toMatchObject({ responseCode: 451 });
    expect(upstream.messages).toHaveLength(1);
  });

  it('fails a message whose signal aborts while the upstream has not answered it', async () => {
    const upstream = await startTestUpstream({ mode: 'stall' });
    cleanups.push(() => upstream.close());
    const abort = new AbortController();
    const sent = pool(upstream.port).send({ from: 'a@example.com', to: ['b@example.org'], message: bufferedMessage(Buffer.from('Subject: x\r\n\r\nhi\r\n')), signal: abort.signal });
    await eventually(() => upstream.attempts.length === 1, 'the message to reach the upstream');
    abort.abort();
    await expect(sent).rejects.toThrow();
    expect(upstream.messages).toHaveLength(0);
  });

  it('leaves no listener on a signal shared by every send (the gateway passes its shutdown signal)', async () => {
    const upstream = await startTestUpstream({ rejectRecipient: 'gone@example.org' });
    cleanups.push(() => upstream.close());
    const shared = new AbortController().signal;
    const sender = pool(upstream.port, { maxConnections: 2 });
    const send = (n: number) =>
      sender.send({ from: 'a@example.com', to: n % 3 ? ['b@example.org'] : ['gone@example.org'], message: bufferedMessage(Buffer.from(`Subject: ${n}\r\n\r\nhi\r\n`)), signal: shared });
    const settled = await Promise.allSettled(Array.from({ length: 12 }, (_, n) => send(n)));
    expect(settled.filter((result) => result.status === 'fulfilled')).toHaveLength(8);
    expect(getEventListeners(shared, 'abort')).toHaveLength(0);
  });

  it('snapshot() counts busy and idle connections and queued messages as the pool moves', async () => {
    const releases: Array<() => void> = [];
    const upstream = new SMTPServer({
      logger: false,
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      onData(stream, _session, callback) {
        // every message is held until the test lets it go, so the pool stays busy
        text(stream).then(() => releases.push(() => callback()), callback);
      },
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream.server, 'listening');
    cleanups.push(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const sender = pool((upstream.server.address() as AddressInfo).port, { maxConnections: 1 });
    const metrics = createMetrics(new Registry());
    metrics.setUpstreamPoolSource(() => sender.snapshot());

    const send = (n: number) => sender.send({ from: 'a@example.com', to: ['b@example.org'], message: bufferedMessage(Buffer.from(`Subject: m${n}\r\n\r\nhi\r\n`)), signal: never });
    const first = send(1);
    await eventually(() => releases.length === 1, 'the first message to reach the upstream');
    expect(sender.snapshot()).toEqual({ active: 1, idle: 0, queued: 0 });
    const rest = [send(2), send(3)];
    await eventually(() => sender.snapshot().queued === 2, 'two messages to queue');
    expect(await metrics.registry.metrics()).toMatch(/^smtp_gateway_upstream_pool\{state="queued"\} 2$/m);
    for (let n = 0; n < 3; n++) {
      await eventually(() => releases.length > 0, 'the next held message');
      releases.shift()!();
    }
    await Promise.all([first, ...rest]);
    await eventually(() => sender.snapshot().idle === 1, 'the pooled connection to go idle');
    expect(sender.snapshot()).toEqual({ active: 0, idle: 1, queued: 0 });
  });
});
