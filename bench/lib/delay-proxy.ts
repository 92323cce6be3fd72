/**
 * A TCP proxy in front of an SMTP upstream that delays the upstream's replies,
 * as a remote smarthost's round trips and its work on a message would: every
 * reply waits `replyDelayMs`, the reply to the final dot (the first reply after a
 * 354) waits `dotDelayMs` instead. Replies keep their order; client bytes pass at
 * once. The benchmark puts it between the gateway and smtp-sink.
 */
import net from 'node:net';

export interface DelayProxyOptions {
  readonly upstream: { readonly host: string; readonly port: number };
  /** Delay of every reply, ms. @default 10 */
  readonly replyDelayMs?: number;
  /** Delay of the reply to the final dot, ms. @default 50 */
  readonly dotDelayMs?: number;
}

export interface DelayProxy {
  readonly host: string;
  readonly port: number;
  /** Connections the proxy has accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

const REPLY_END = /^\d{3} /;

export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const replyDelayMs = options.replyDelayMs ?? 10;
  const dotDelayMs = options.dotDelayMs ?? 50;
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    connections += 1;
    const upstream = net.connect(options.upstream.port, options.upstream.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    // Each whole reply is released no earlier than its delay after it arrived, and never before the one ahead of it.
    let pending = '';
    let reply = '';
    let afterData = false;
    let releaseAt = 0;
    upstream.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      let end: number;
      while ((end = pending.indexOf('\r\n')) >= 0) {
        const line = pending.slice(0, end + 2);
        pending = pending.slice(end + 2);
        reply += line;
        if (!REPLY_END.test(line)) continue;
        const text = reply;
        reply = '';
        releaseAt = Math.max(Date.now() + (afterData ? dotDelayMs : replyDelayMs), releaseAt);
        afterData = line.startsWith('354');
        setTimeout(() => client.writable && client.write(text, 'latin1'), releaseAt - Date.now());
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    get connections() {
      return connections;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
