/**
 * The spool: each message is received whole before it goes upstream, in memory
 * up to spool.memoryThresholdBytes and in a 0600 file of spool.dir beyond it;
 * the file is gone once the client has its reply, a full spool answers 452
 * 4.3.1 without asking the upstream, and leftovers are removed at start-up.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { openConnection, startData } from '../../testkit/smtp-client';
import { startTestGateway, testConfig } from '../../testkit/test-gateway';
import { startRecordingUpstream } from '../../testkit/recording-upstream';
import { startGateway } from '../src/gateway';
import { Spool } from '../src/relay/spool';

const track = closeAfterEach();
const HEAD = 'From: app@example.com\r\nTo: user@example.org\r\nSubject: spooled\r\n\r\n';
const LINE = `${'s'.repeat(76)}\r\n`;
const dirs: string[] = [];
const spoolDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  dirs.push(dir);
  return join(dir, 'spool');
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function sendRaw(port: number, body: string) {
  const connection = await openConnection(port);
  await startData(connection, 'app@example.com', ['user@example.org']);
  connection.write(`${HEAD}${body}.\r\n`);
  return { connection, reply: connection.reply(15_000) };
}

describe('Spool entries', () => {
  /** 1-byte to 20 KiB chunks, as a dripping client and a fast one write them. */
  const chunksOf = (total: number) => {
    const chunks: Buffer[] = [];
    let seed = 7;
    for (let written = 0; written < total; ) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const size = Math.min(total - written, seed % 3 === 0 ? 1 + (seed % 7) : 1 + (seed % 20_000));
      chunks.push(Buffer.alloc(size, written % 251));
      written += size;
    }
    return chunks;
  };

  for (const [what, threshold] of [
    ['in memory', 1024 * 1024],
    ['spilled to a file', 4096],
  ] as const) {
    it(`${what}: reads back byte for byte, any number of times, and gives its space back when discarded`, async () => {
      const { spool } = await Spool.open({ dir: spoolDir(), memoryThresholdBytes: threshold, memoryMaxBytes: 8 * 1024 * 1024, maxBytes: 8 * 1024 * 1024 });
      const chunks = chunksOf(300_000);
      const entry = spool.create();
      for (const chunk of chunks) entry.write(chunk);
      await entry.end();
      const expected = Buffer.concat(chunks);
      expect(entry.size).toBe(expected.length);
      expect(entry.spilled).toBe(threshold < expected.length);
      expect(spool.usage).toEqual(entry.spilled ? { memory: 0, disk: expected.length } : { memory: expected.length, disk: 0 });
      for (let read = 0; read < 2; read++) {
        const streamed: Buffer[] = [];
        for await (const chunk of entry.open()) streamed.push(chunk as Buffer);
        expect(Buffer.concat(streamed).equals(expected)).toBe(true);
      }
      expect((await entry.buffer()).equals(expected)).toBe(true);
      await entry.discard();
      expect(spool.usage).toEqual({ memory: 0, disk: 0 });
      expect(readdirSync(spool.options.dir)).toEqual([]);
    });
  }
});

describe('spool', () => {
  it('a message over memoryThresholdBytes waits in a 0600 file of spool.dir (0700), deleted once the client has its 250', async () => {
    const dir = spoolDir();
    const upstream = track(await startRecordingUpstream({ replyDelayMs: 600 }));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, spool: { dir, memoryThresholdBytes: 4096 } }));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const body = LINE.repeat(1000); // 78 KB
    const { connection, reply } = await sendRaw(gw.relayPort, body);
    // the upstream has the whole message and is thinking: the spooled copy is still there
    await eventually(() => upstream.attempts.some((attempt) => attempt.completed), 'the upstream to get the dot');
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^spool-[0-9a-f-]{36}\.eml$/);
    expect(statSync(join(dir, files[0])).mode & 0o777).toBe(0o600);
    expect(await gw.spooledBytes()).toBeGreaterThan(body.length);
    expect((await reply).code).toBe(250);
    expect(readdirSync(dir)).toEqual([]);
    expect(await gw.spooledBytes()).toBe(0);
    // byte for byte what the client sent, after the added headers
    const parsed = await simpleParser(upstream.messages[0].raw);
    expect(parsed.text).toBe(body.replaceAll('\r\n', '\n'));
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ outcome: 'relayed', spilled: true });
    connection.destroy();
  });

  it('a small message stays in memory: no file, and it is relayed', async () => {
    const dir = spoolDir();
    const upstream = track(await startRecordingUpstream({ replyDelayMs: 300 }));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, spool: { dir } }));
    const { connection, reply } = await sendRaw(gw.relayPort, 'short\r\n');
    await eventually(() => upstream.attempts.some((attempt) => attempt.completed), 'the upstream to get the dot');
    expect(readdirSync(dir)).toEqual([]);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_spool_bytes\{medium="memory"\} [1-9]/);
    expect((await reply).code).toBe(250);
    expect(gw.logs.find((line) => line.msg === 'transaction')).toMatchObject({ outcome: 'relayed', spilled: false });
    connection.destroy();
  });

  it('past memoryMaxBytes even a small message spills to disk', async () => {
    const dir = spoolDir();
    const upstream = track(await startRecordingUpstream({ replyDelayMs: 300 }));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, spool: { dir, memoryMaxBytes: 0 } }));
    const { connection, reply } = await sendRaw(gw.relayPort, 'short\r\n');
    await eventually(() => upstream.attempts.some((attempt) => attempt.completed), 'the upstream to get the dot');
    expect(readdirSync(dir)).toHaveLength(1);
    expect((await reply).code).toBe(250);
    expect(readdirSync(dir)).toEqual([]);
    connection.destroy();
  });

  it('spool full → 452 4.3.1, the upstream is never asked, the space is given back; a message that fits still goes', async () => {
    const dir = spoolDir();
    const upstream = track(await startRecordingUpstream({}));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, spool: { dir, memoryThresholdBytes: 1024, maxBytes: 32 * 1024 } }));
    const { connection, reply } = await sendRaw(gw.relayPort, LINE.repeat(1000));
    const full = await reply;
    expect(full.code).toBe(452);
    expect(full.text).toMatch(/^452 4\.3\.1 /);
    expect(upstream.mailFroms).toHaveLength(0);
    expect(readdirSync(dir)).toEqual([]);
    expect(await gw.spooledBytes()).toBe(0);
    expect(await gw.metricsText()).toMatch(/smtp_gateway_messages_total\{outcome="deferred",reason="spool_full"\} 1/);
    // the same session, a message that fits
    await connection.command('MAIL FROM:<app@example.com>');
    await connection.command('RCPT TO:<user@example.org>');
    await connection.command('DATA');
    connection.write(`${HEAD}${LINE.repeat(100)}.\r\n`);
    expect((await connection.reply(15_000)).code).toBe(250);
    expect(upstream.messages).toHaveLength(1);
    connection.destroy();
  });

  it('SIZE= at MAIL FROM larger than the spool has room for → 452 4.3.1 before any data (RFC 1870); a size that fits is taken', async () => {
    const upstream = track(await startRecordingUpstream({}));
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, spool: { dir: spoolDir(), memoryThresholdBytes: 1024, maxBytes: 32 * 1024 } }));
    const connection = track(await openConnection(gw.relayPort));
    await connection.command('EHLO client.test');
    const refused = await connection.command('MAIL FROM:<app@example.com> SIZE=100000');
    expect(refused.code).toBe(452);
    expect(refused.text).toMatch(/^452 4\.3\.1 /);
    expect((await connection.command('MAIL FROM:<app@example.com> SIZE=20000')).code).toBe(250);
    expect(upstream.mailFroms).toHaveLength(0);
  });

  it('at start-up, spool files an earlier process left are removed (and logged); other files are left alone', async () => {
    const dir = spoolDir();
    const upstream = track(await startRecordingUpstream({}));
    await startTestGateway({ upstreamPort: upstream.port, spool: { dir } }).then((gw) => gw.close());
    const leftover = join(dir, 'spool-0b7e4f7e-1111-4b6e-9d1e-3c1f5a6b7c8d.eml');
    writeFileSync(leftover, 'half a message');
    writeFileSync(join(dir, 'notes.txt'), 'not ours');
    const gw = track(await startTestGateway({ upstreamPort: upstream.port, spool: { dir } }));
    expect(readdirSync(dir)).toEqual(['notes.txt']);
    expect(gw.logs.find((line) => line.msg?.toString().startsWith('removed messages an earlier process left'))).toMatchObject({ level: 'warn', files: 1 });
  });

  it('a spool.dir that cannot be used stops the start naming the key', async () => {
    const dir = spoolDir();
    writeFileSync(join(dir, '..', 'file'), 'a file, not a folder');
    const config = testConfig({ upstreamPort: 1, spool: { dir: join(dir, '..', 'file') } });
    await expect(startGateway(config)).rejects.toThrow(/^spool\.dir ".*file": /);
  });

  it('drain gives up on a spooled message the upstream is still taking: 451 4.3.2, the file is deleted', async () => {
    const dir = spoolDir();
    const upstream = track(await startRecordingUpstream({ stallRate: 1 }));
    const gw = track(
      await startTestGateway({ upstreamPort: upstream.port, spool: { dir, memoryThresholdBytes: 1024 }, drain: { delaySeconds: 0, graceSeconds: 0.5 } }),
    );
    const { connection, reply } = await sendRaw(gw.relayPort, LINE.repeat(200));
    await eventually(() => upstream.attempts.some((attempt) => attempt.completed), 'the upstream to get the dot');
    expect(readdirSync(dir)).toHaveLength(1);
    await gw.gateway.drain();
    const answer = await reply;
    expect(answer.code).toBe(451);
    expect(answer.text).toMatch(/^451 4\.3\.2 /);
    expect(readdirSync(dir)).toEqual([]);
    expect(upstream.messages).toHaveLength(0);
    connection.destroy();
  });
});
