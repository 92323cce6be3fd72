/**
 * Contract of smtp/smtp-server-adapter.ts with the installed smtp-server: the
 * private command dispatcher it wraps still sees every command line (also
 * after STARTTLS, which replaces the parser), the moment after each reply, and
 * the DATA stream's byteLength grows during the transfer. An upgrade that
 * breaks any of these fails here, not in production.
 */
import { createServer, type AddressInfo, type Server } from 'node:net';
import { readFileSync } from 'node:fs';
import { SMTPServer, type SMTPServerDataStream } from 'smtp-server';
import { describe, expect, it } from 'vitest';
import { observeConnection } from '../src/smtp/smtp-server-adapter';
import { makeTestCertificates } from '../../testkit/certs';
import { closeAfterEach } from '../../testkit/close-after-each';
import { eventually } from '../../testkit/eventually';
import { openConnection, startData } from '../../testkit/smtp-client';

const track = closeAfterEach();
const installed = (JSON.parse(readFileSync(require.resolve('smtp-server/package.json'), 'utf8')) as { version: string }).version;

interface Harness {
  readonly port: number;
  readonly events: string[];
  readonly handles: Array<ReturnType<typeof observeConnection>>;
  readonly streams: SMTPServerDataStream[];
  readonly byteLengthsSeen: number[];
}

async function start(tls?: { key: Buffer; cert: Buffer }): Promise<Harness> {
  const events: string[] = [];
  const handles: Harness['handles'] = [];
  const streams: SMTPServerDataStream[] = [];
  const byteLengthsSeen: number[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH'],
    hideSTARTTLS: !tls,
    ...(tls ?? {}),
    logger: false,
    onData(stream, _session, callback) {
      streams.push(stream);
      stream.on('data', () => byteLengthsSeen.push((stream as SMTPServerDataStream & { byteLength: number }).byteLength));
      stream.on('end', () => callback());
    },
  });
  let next = 0;
  const net: Server = createServer((socket) => {
    const id = `session${next++}`;
    smtp.connect(socket, { id, remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 });
    handles.push(observeConnection(smtp, id, { command: (name) => events.push(`command ${name}`), ready: () => events.push('ready') }));
  });
  await new Promise<void>((resolve) => net.listen(0, '127.0.0.1', resolve));
  track({
    close: async () => {
      net.close();
      await new Promise<void>((resolve) => smtp.close(resolve));
    },
  });
  return { port: (net.address() as AddressInfo).port, events, handles, streams, byteLengthsSeen };
}

describe(`smtp-server ${installed} as smtp-server-adapter.ts uses it`, () => {
  it('every command line is observed, each followed by ready once answered', async () => {
    const harness = await start();
    const connection = track(await openConnection(harness.port));
    await connection.command('EHLO client.test');
    await connection.command('NOOP');
    await connection.command('bogus command');
    expect(harness.events).toEqual(['command EHLO', 'ready', 'command NOOP', 'ready', 'command BOGUS', 'ready']);
  });

  it('commands after STARTTLS are observed too (the parser is replaced, the connection is not)', async () => {
    const certs = await makeTestCertificates();
    const harness = await start({ key: certs.key, cert: certs.cert });
    const connection = track(await openConnection(harness.port));
    await connection.command('EHLO client.test');
    expect((await connection.command('STARTTLS')).code).toBe(220);
    await connection.startTls(certs.ca);
    await connection.command('EHLO client.test');
    expect(harness.events).toEqual(['command EHLO', 'ready', 'command STARTTLS', 'ready', 'command EHLO', 'ready']);
  });

  it('the DATA stream reports its byteLength while the message arrives, and writableEnded at the dot', async () => {
    const harness = await start();
    const connection = track(await openConnection(harness.port));
    expect((await startData(connection, 'a@example.com', ['b@example.org'])).at(-1)?.code).toBe(354);
    connection.write('Subject: x\r\n\r\nfirst part\r\n');
    await eventually(() => harness.byteLengthsSeen.length > 0, 'the first data chunk');
    expect(harness.byteLengthsSeen[0]).toBeGreaterThan(0);
    expect(harness.streams[0].writableEnded).toBe(false);
    connection.write('second part\r\n.\r\n');
    expect((await connection.reply()).code).toBe(250);
    expect(harness.streams[0].writableEnded).toBe(true);
  });

  it('close421 writes the text as given and closes the connection', async () => {
    const harness = await start();
    const connection = track(await openConnection(harness.port));
    await connection.command('EHLO client.test');
    harness.handles[0].close421('4.4.2 test Error: timeout exceeded');
    expect((await connection.reply()).text).toBe('421 4.4.2 test Error: timeout exceeded');
    await connection.waitClosed(5000);
  });
});
