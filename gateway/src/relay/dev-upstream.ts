/**
 * The development upstream `make run` relays to (devUpstream.enabled, never a fallback): a
 * loopback SMTP server that writes each message it is given to an .eml file and
 * logs where. It sits behind the real upstream transport, so local runs exercise
 * the same relay path as production.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { SMTPServer } from 'smtp-server';
import type { Logger } from '../ops/logger';

export interface DevUpstream {
  readonly host: string;
  readonly port: number;
  /** Absolute path of the folder the .eml files go to. */
  readonly dir: string;
  close(): Promise<void>;
}

export async function startDevUpstream(dir: string, logger: Logger): Promise<DevUpstream> {
  const folder = resolve(dir);
  await mkdir(folder, { recursive: true });
  let counter = 0;
  const server = new SMTPServer({
    name: 'dev-upstream.localhost',
    banner: 'smtp-gateway development upstream, writes .eml files',
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    hideSTARTTLS: true,
    disableReverseLookup: true,
    logger: false,
    onData(stream, session, callback) {
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const name = `${stamp}-${session.id}-${++counter}.eml`;
      const file = join(folder, name);
      pipeline(stream, createWriteStream(file, { mode: 0o600 })).then(
        () => {
          logger.info('dev upstream wrote message', {
            file,
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            recipients: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          });
          callback(null, `Ok: queued as ${name}`);
        },
        (err: Error) => callback(Object.assign(new Error(`4.3.0 Could not write ${name}: ${err.message}`), { responseCode: 451 })),
      );
    },
  });
  await new Promise<void>((done, fail) => {
    server.server.once('error', fail);
    server.listen(0, '127.0.0.1', () => done());
  });
  const { port } = server.server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    dir: folder,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
