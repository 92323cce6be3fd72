/**
 * An upstream that is deliberately lenient about line endings, the way the
 * servers exploited by SMTP smuggling are: it ends DATA at a dot on a line of
 * its own terminated by any of CR, LF or CRLF, and splits commands on any of
 * them too. If a gateway passes a bare-LF or bare-CR "end of data" through,
 * this upstream sees the rest as new commands: a second, smuggled message.
 */
import net from 'node:net';

export interface LenientMessage {
  readonly mailFrom: string;
  readonly rcptTo: string[];
  /** The data as received, without the terminating dot line. */
  readonly data: string;
}

export interface LenientUpstream {
  readonly host: string;
  readonly port: number;
  readonly messages: LenientMessage[];
  close(): Promise<void>;
}

/** A dot alone on a line, with any mix of CR/LF around it. */
const END_OF_DATA = /(?:^|\r\n|\n|\r)\.(?:\r\n|\n|\r)/;
const LINE_END = /\r\n|\n|\r/;

export async function startLenientUpstream(): Promise<LenientUpstream> {
  const messages: LenientMessage[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = '';
    let inData = false;
    let mailFrom = '';
    let rcptTo: string[] = [];
    const reply = (line: string) => socket.write(`${line}\r\n`);
    reply('220 lenient.upstream.test ESMTP');
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          const end = END_OF_DATA.exec(buffer);
          if (!end) return;
          // "\r" closing the buffer may be the first half of "\r\n": wait for the next byte.
          if (end[0].endsWith('\r') && end.index + end[0].length === buffer.length) return;
          messages.push({ mailFrom, rcptTo, data: buffer.slice(0, end.index) });
          buffer = buffer.slice(end.index + end[0].length);
          inData = false;
          mailFrom = '';
          rcptTo = [];
          reply(`250 2.0.0 Ok: queued as L${messages.length}`);
          continue;
        }
        const end = LINE_END.exec(buffer);
        if (!end) return;
        // A lone CR at the very end may be the first half of CRLF: wait for more.
        if (end[0] === '\r' && end.index === buffer.length - 1) return;
        const line = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') reply('250-lenient.upstream.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600');
        else if (verb === 'HELO') reply('250 lenient.upstream.test');
        else if (verb === 'MAIL') {
          mailFrom = /<([^>]*)>/.exec(line)?.[1] ?? '';
          rcptTo = [];
          reply('250 2.1.0 Ok');
        } else if (verb === 'RCPT') {
          rcptTo.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          reply('250 2.1.5 Ok');
        } else if (verb === 'DATA') {
          inData = true;
          reply('354 End data with <CR><LF>.<CR><LF>');
        } else if (verb === 'RSET') {
          mailFrom = '';
          rcptTo = [];
          reply('250 2.0.0 Ok');
        } else if (verb === 'NOOP') reply('250 2.0.0 Ok');
        else if (verb === 'QUIT') {
          reply('221 2.0.0 Bye');
          socket.end();
        } else reply('502 5.5.2 Error: command not recognized');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    messages,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
